#!/usr/bin/env python3
"""Trains the demo model's tokenizer (issue 9): a 1024-id byte-level BPE.

Hugging Face `tokenizers`, the o200k-style Split regex as the tiny models'
(tests/reference/make_tiny_tokenizer.py), trained on the generator's captions,
questions and answers (scripts/demo/gen.py, training seed; weighted so its
words become single tokens) plus the generic text of scripts/tokenizer_corpus.py.
1018 BPE tokens, then the six MiniMax special tokens, `<image>` last (1023).

The committed tokenizer (testdata/demo-model/) was trained at commit 026b7d8, on the first, wider
generator's text; the demo weights index its ids, so it is kept. Rerunning this script on today's
narrower gen.py trains a different BPE: check out 026b7d8's scripts/demo/gen.py to reproduce it.

Usage: make_tokenizer.py MODEL_DIR   (writes tokenizer.json, tokenizer_config.json)
"""
import json
import os
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import gen  # noqa: E402
import make_test_tokenizers  # noqa: E402
import tokenizer_corpus  # noqa: E402

SPECIALS = ["<end_of_document>", "<beginning_of_sentence>", "<end_of_sentence>", "<function_call>",
            "<code_interpreter>", "<image>"]
VOCAB = 1024


def demo_text(n=1500):
    out = ["user name=user\n", "ai name=assistant\n", "system ai_setting=assistant\n", gen.CAPTION_PROMPT]
    for k in range(n):
        _, cap, qa = gen.sample(gen.TRAIN_SEED, k)
        out.append(cap)
        out += [q + " " + a for _, q, a in qa]
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(make_test_tokenizers.O200K), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - len(SPECIALS), min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = demo_text()
    tok.train_from_iterator(text * 20 + list(tokenizer_corpus.training_text()), trainer=trainer)
    assert tok.get_vocab_size() == VOCAB - len(SPECIALS), tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    assert ids["<image>"] == VOCAB - 1, ids
    config = {
        "add_bos_token": False, "add_eos_token": False, "add_prefix_space": False,
        "clean_up_tokenization_spaces": False, "bos_token": "<beginning_of_sentence>",
        "eos_token": "<end_of_sentence>", "unk_token": "<end_of_document>", "pad_token": None,
        "model_max_length": 8192, "tokenizer_class": "GPT2Tokenizer",
        "additional_special_tokens": ["<image>", "<function_call>"],
        "added_tokens_decoder": {str(ids[s]): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                               "single_word": False, "special": True} for s in SPECIALS},
    }
    tok.save(os.path.join(sys.argv[1], "tokenizer.json"))
    with open(os.path.join(sys.argv[1], "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    words = sorted(set(gen.WORDS + gen.SHAPES + list(gen.COLOURS) + gen.NUMBERS))
    multi = [w for w in words if len(tok.encode(" " + w).ids) > 1]
    print(f"vocab {VOCAB}; <image> = {ids['<image>']}; words split in more than one token: {multi}")


if __name__ == "__main__":
    main()
