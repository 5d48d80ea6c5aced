#!/usr/bin/env python3
"""Trains the tokenizer of the tiny test models (testdata/tiny-random*).

A byte-level BPE made with Hugging Face `tokenizers` on the same text as the
test tokenizers (scripts/tokenizer_corpus.py), with the o200k-style Split
regex of recent 200k-vocab tokenizers. The vocabulary is sized to the tiny
models' 1536 embedding rows: 1530 BPE tokens, then six MiniMax special tokens
with `<image>` last, at 1535, the image_token_index that
tests/reference/make_tiny_model.py writes (its goldens depend on it).

Usage: make_tiny_tokenizer.py MODEL_DIR...   (writes tokenizer.json and
tokenizer_config.json into each directory)
"""
import json
import os
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import make_test_tokenizers  # noqa: E402
import tokenizer_corpus  # noqa: E402

SPECIALS = ["<end_of_document>", "<beginning_of_sentence>", "<end_of_sentence>", "<function_call>",
            "<code_interpreter>", "<image>"]
VOCAB = 1536


def train(vocab, texts):
    """A byte-level BPE of `vocab` ids trained on `texts`, the six special tokens
    last (`<image>` = vocab - 1); returns the tokenizer, the special ids and the
    tokenizer_config.json contents. The demo model's tokenizer is made the same
    way (scripts/demo/make_tokenizer.py)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(make_test_tokenizers.O200K), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab - len(SPECIALS), min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    assert tok.get_vocab_size() == vocab - len(SPECIALS), tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    assert ids["<image>"] == vocab - 1, ids
    config = {
        "add_bos_token": False, "add_eos_token": False, "add_prefix_space": False,
        "clean_up_tokenization_spaces": False, "bos_token": "<beginning_of_sentence>",
        "eos_token": "<end_of_sentence>", "unk_token": "<end_of_document>", "pad_token": None,
        "model_max_length": 8192, "tokenizer_class": "GPT2Tokenizer",
        "additional_special_tokens": ["<image>", "<function_call>"],
        "added_tokens_decoder": {str(ids[s]): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                               "single_word": False, "special": True} for s in SPECIALS},
    }
    return tok, ids, config


def save(tok, config, d):
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)


def main():
    dirs = sys.argv[1:]
    if not dirs:
        sys.exit(__doc__)
    tok, ids, config = train(VOCAB, tokenizer_corpus.training_text())
    for d in dirs:
        save(tok, config, d)
    print(f"vocab {VOCAB - len(SPECIALS)} + {len(SPECIALS)} specials; <end_of_sentence> = {ids['<end_of_sentence>']}, "
          f"<image> = {ids['<image>']}")


if __name__ == "__main__":
    main()
