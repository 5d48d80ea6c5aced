#!/usr/bin/env python3
"""Trains the demo model's tokenizer (issue 9): a 1024-id byte-level BPE.

Hugging Face `tokenizers`, the o200k-style Split regex as the tiny models'
(tests/reference/make_tiny_tokenizer.py), trained (the same function: make_tiny_tokenizer.train) on the generator's captions,
questions and answers (scripts/demo/gen.py, training seed; weighted so its
words become single tokens) plus the generic text of scripts/tokenizer_corpus.py.
1018 BPE tokens, then the six MiniMax special tokens, `<image>` last (1023).

The committed tokenizer (testdata/demo-model/) was trained at commit 026b7d8, on the first, wider
generator's text; the demo weights index its ids, so it is kept. Rerunning this script on today's
narrower gen.py trains a different BPE: check out 026b7d8's scripts/demo/gen.py to reproduce it.

Usage: make_tokenizer.py MODEL_DIR   (writes tokenizer.json, tokenizer_config.json)
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "reference"))
import gen  # noqa: E402
import make_tiny_tokenizer  # noqa: E402
import tokenizer_corpus  # noqa: E402

VOCAB = 1024  # the six special tokens of make_tiny_tokenizer.SPECIALS come last


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
    text = demo_text()
    tok, ids, config = make_tiny_tokenizer.train(VOCAB, text * 20 + list(tokenizer_corpus.training_text()))
    make_tiny_tokenizer.save(tok, config, sys.argv[1])
    words = sorted(set(gen.WORDS + gen.SHAPES + list(gen.COLOURS) + gen.NUMBERS))
    multi = [w for w in words if len(tok.encode(" " + w).ids) > 1]
    print(f"vocab {VOCAB}; <image> = {ids['<image>']}; words split in more than one token: {multi}")


if __name__ == "__main__":
    main()
