#!/usr/bin/env python3
"""Trains the small byte-level BPE test tokenizers in testdata/tokenizers/.

Uses Hugging Face `tokenizers` (scripts/setup-python.sh) on text gathered on
this machine (scripts/tokenizer_corpus.py). Three tokenizers, each ~8k vocab:

  bpe8k-gpt2    ByteLevel pre-tokenizer with its GPT-2 regex, merges saved in
                the legacy "a b" string form.
  bpe8k-cl100k  Sequence[Split(cl100k-style regex), ByteLevel(use_regex=false)],
                merges in the ["a","b"] pair form.
  bpe8k-o200k   NFC normalizer + Sequence[Split(o200k-style \\p{L}/digit-group
                regex), ByteLevel(use_regex=false)], pair-form merges.

MiniMax special tokens: the released model keeps 64 added tokens at ids
200000..200063 with <end_of_sentence> = 200020 and <image> = 200025
(vision.md §5.2). Here the same 64-slot block starts right after the trained
vocabulary, so <end_of_sentence> = base + 20 and <image> = base + 25. The C
code reads every id from the files, never from constants.

Usage: python3 scripts/make_test_tokenizers.py [OUT_DIR]   (default testdata/tokenizers)
"""
import json
import os
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_corpus  # noqa: E402

CL100K = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
O200K = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
         r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
         r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
         r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
         r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Slot k of the 64-token block; slots not named here get <reserved_k>.
SPECIAL_SLOTS = {
    0: "<end_of_document>",
    1: "<begin_of_document>",
    19: "<beginning_of_sentence>",
    20: "<end_of_sentence>",
    21: "<function_call>",
    22: "<code_interpreter>",
    25: "<image>",
    26: "<video>",
}
# Non-special added tokens (matched after normalization, decoded verbatim).
PLAIN_ADDED = ["<think>", "</think>"]


def build(name, normalizer, pre_tok, pair_merges, out_dir, texts):
    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tok
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=8000, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    base = tok.get_vocab_size()
    specials = [SPECIAL_SLOTS.get(k, "<reserved_%d>" % k) for k in range(64)]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.add_tokens([AddedToken(s, special=False, normalized=True) for s in PLAIN_ADDED])

    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "tokenizer.json")
    tok.save(path)
    j = json.load(open(path, encoding="utf-8"))
    merges = j["model"]["merges"]
    if pair_merges:
        j["model"]["merges"] = [m if isinstance(m, list) else m.split(" ") for m in merges]
    else:
        j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in merges]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
    # The reloaded file must give the same ids as the trained object.
    check = Tokenizer.from_file(path)
    probe = "Hello <image> world <end_of_sentence> 12345 东京 😀"
    assert check.encode(probe, add_special_tokens=False).ids == \
        tok.encode(probe, add_special_tokens=False).ids

    ids = {s: check.token_to_id(s) for s in specials + PLAIN_ADDED}
    assert ids["<end_of_sentence>"] == base + 20 and ids["<image>"] == base + 25
    config = {
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "bos_token": "<beginning_of_sentence>",
        "eos_token": "<end_of_sentence>",
        "unk_token": "<end_of_document>",
        "pad_token": None,
        "model_max_length": 40960000,
        "tokenizer_class": "GPT2Tokenizer",
        "additional_special_tokens": ["<image>", "<function_call>"],
        "added_tokens_decoder": {
            str(ids[s]): {"content": s, "lstrip": False, "normalized": s in PLAIN_ADDED,
                          "rstrip": False, "single_word": False, "special": s not in PLAIN_ADDED}
            for s in specials + PLAIN_ADDED
        },
    }
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    print("%s: vocab %d + %d added, %d bytes" % (name, base, len(specials) + len(PLAIN_ADDED),
                                                 os.path.getsize(path)))


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "tokenizers")
    texts = tokenizer_corpus.training_text()
    bl = pre_tokenizers.ByteLevel
    build("bpe8k-gpt2", None, bl(add_prefix_space=False, use_regex=True), False, out_dir, texts)
    split = lambda rx: pre_tokenizers.Sequence([  # noqa: E731
        pre_tokenizers.Split(Regex(rx), behavior="isolated", invert=False),
        bl(add_prefix_space=False, use_regex=False)])
    build("bpe8k-cl100k", None, split(CL100K), True, out_dir, texts)
    build("bpe8k-o200k", normalizers.NFC(), split(O200K), True, out_dir, texts)


if __name__ == "__main__":
    main()
