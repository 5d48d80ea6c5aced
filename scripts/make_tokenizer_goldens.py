#!/usr/bin/env python3
"""Golden encodings from Hugging Face `tokenizers` for tests/test_tokenizer_golden.c.

Writes, under testdata/tokenizers/:
  golden_strings.bin      the test strings: "MVLSTR <count>\\n", then for each
                          string "<byte length>\\n<bytes>\\n" (raw UTF-8).
  <name>/golden.txt       one line per string: "<n_ids> <hash>", where hash is
                          FNV-1a 64 over the ids (int32 little-endian) followed
                          by the bytes of HF decode(ids); then "big<k> ..." lines
                          for the generated 1 MB inputs, and "dec<k> <n_bytes>
                          <hash>" lines for HF decode of pseudo-random id
                          sequences (partial UTF-8 tokens, specials).

The 1 MB inputs and the random id sequences come from a 64-bit LCG that the C
test re-implements (tests/tok_testutil.c); keep both in step.

Usage: python3 scripts/make_tokenizer_goldens.py [--show NAME INDEX]
  --show prints HF's ids for one string, to debug a mismatch.
"""
import os
import random
import struct
import sys

from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_corpus  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "tokenizers")
NAMES = ["bpe8k-gpt2", "bpe8k-cl100k", "bpe8k-o200k"]
MASK = (1 << 64) - 1

# Same list, same order, as big_fragments[] in tests/tok_testutil.c.
BIG_FRAGMENTS = [
    "The quick brown fox jumps over the lazy dog. ",
    "東京は日本の首都です。",
    "Привет, мир! ",
    "مرحبا بالعالم ",
    "नमस्ते दुनिया ",
    "😀👍🏽 ",
    "x = 12345678 + 0.5;\n",
    "\t\t  \n\n",
    "it's they'll WE'VE ",
    "<image>",
    "e\u0301 ",
    "    return NULL;\n}\n",
]


class Lcg:
    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s * 6364136223846793005 + 1442695040888963407) & MASK
        return self.s >> 33


def big_inputs():
    """The four generated ~1 MB inputs (must match tok_big_input() in C)."""
    out = []
    r = Lcg(1)
    parts, n = [], 0
    while n < 1000000:
        f = BIG_FRAGMENTS[r.next() % len(BIG_FRAGMENTS)].encode()
        parts.append(f)
        n += len(f)
    out.append(b"".join(parts))
    out.append(b" " * 1000000 + b"x")
    r = Lcg(2)
    out.append(bytes(48 + r.next() % 10 for _ in range(1000000)))
    r = Lcg(3)
    ws = [b" ", b"\n", b"\t", b"  ", b"\r\n", b"a"]
    parts, n = [], 0
    while n < 1000000:
        f = ws[r.next() % len(ws)]
        parts.append(f)
        n += len(f)
    out.append(b"".join(parts))
    return out


def fnv(h, data):
    for b in data:
        h = ((h ^ b) * 1099511628211) & MASK
    return h


FNV0 = 1469598103934665603


def ids_hash(ids, decoded):
    return fnv(fnv(FNV0, struct.pack("<%di" % len(ids), *ids)), decoded)


def rand_cp(rng):
    ranges = [(0x20, 0x7E), (0x00, 0x1F), (0x7F, 0x9F), (0xA0, 0xFF), (0x100, 0x24F),
              (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF), (0x600, 0x6FF),
              (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F),
              (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xE0FF),
              (0xFE00, 0xFE0F), (0xFF00, 0xFFFF), (0x1F300, 0x1FAFF), (0x20000, 0x2A6DF),
              (0x10000, 0x1007F), (0xE0000, 0xE007F), (0x10FF00, 0x10FFFF)]
    lo, hi = rng.choice(ranges)
    return chr(rng.randint(lo, hi))


WS = [" ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "\u0085", "\u2028", "\u2029",
      "\u200b", "\u000b", "\u000c", "\u1680", "\u2009", "\u202f", "\u205f", "\u180e",
      "\u001c", "\u001f", "  ", "    ", "\n\n"]
LOOKALIKES = ["<image>", "<image", "image>", "<<image>>", "< image>", "<IMAGE>", "<image >",
              "<end_of_sentence>", "<end_of_sentence", "<beginning_of_sentence>user name=user\n",
              "<beginning_of_sentence>ai name=assistant\n", "<think>", "</think>", "<think >",
              "<reserved_7>", "<reserved_64>", "<image><image>", "<imag<image>e>",
              "<function_call>", "<end_of_document>", "<begin_of_document>", "<|endoftext|>",
              "<\u00a0image>", "＜image＞", "<image>\u0301", "e<think>\u0301"]
WORDS = ["hello", "Hello", "HELLO", "world", "it's", "IT'S", "they'll", "We've", "I'M", "don’t",
         "naïve", "café", "東京", "日本語", "мир", "عربي", "हिन्दी", "ไทย", "😀", "👨‍👩‍👧",
         "x", "_", "__init__", "foo.bar", "a/b/c", "3.14", "1,000", "$5", "100%", "#tag",
         "C++", "e\u0301", "\u0301", "Å", "ﬁ", "①", "²", "٣", "१२", "１２３"]


def make_strings():
    rng = random.Random(1234)
    out = []
    lines = []
    for t in tokenizer_corpus.machine_texts():
        lines.extend(t.split("\n"))
    for _ in range(1300):
        i = rng.randrange(len(lines))
        s = "\n".join(lines[i:i + rng.randint(1, 3)])
        out.append(s[:400])
    ml = tokenizer_corpus.MULTILINGUAL
    out.extend(ml)
    for _ in range(300):
        s = rng.choice(ml)
        a = rng.randrange(len(s))
        out.append(s[a:a + rng.randint(1, 60)])
    for _ in range(350):  # whitespace runs, alone or around words
        s = "".join(rng.choice(WS) for _ in range(rng.randint(1, 60)))
        if rng.random() < 0.6:
            s = rng.choice(WORDS) + s + rng.choice(WORDS)
        if rng.random() < 0.3:
            s = s + "".join(rng.choice(WS) for _ in range(rng.randint(1, 5)))
        out.append(s)
    for n in (1, 2, 3, 4, 5, 6, 7, 10, 50, 100, 200, 300):
        out.append(" " * n)
        out.append(" " * n + "x")
        out.append("\n" * n)
        out.append("x" + " " * n + "\n")
    digits = "0123456789"
    udigits = "٠١٢٣٤٥٦٧٨٩०१२३४५६७८९１２３４５６７８９²³¹½"
    for _ in range(250):
        s = "".join(rng.choice(digits) for _ in range(rng.randint(1, 60)))
        if rng.random() < 0.5:
            s = s.replace(rng.choice(digits), rng.choice([",", ".", " ", "_", "-", "e"]))
        if rng.random() < 0.3:
            s += "".join(rng.choice(udigits) for _ in range(rng.randint(1, 8)))
        if rng.random() < 0.3:
            s = rng.choice(WORDS) + s
        out.append(s)
    for _ in range(350):  # special-token look-alikes among words
        parts = [rng.choice(LOOKALIKES if rng.random() < 0.5 else WORDS)
                 for _ in range(rng.randint(1, 6))]
        out.append(rng.choice(["", " ", "\n"]).join(parts))
    for _ in range(450):  # random code points from many blocks
        out.append("".join(rand_cp(rng) for _ in range(rng.randint(1, 40))))
    for _ in range(250):  # contractions and case
        w = [rng.choice(WORDS) for _ in range(rng.randint(1, 5))]
        sfx = ["'s", "'S", "'t", "'re", "'VE", "'m", "'ll", "'D", "’s", "'x", "''", "'"]
        out.append(" ".join(x + rng.choice(sfx) for x in w))
    for _ in range(150):  # NFC material: decomposed forms, jamo, marks
        base = rng.choice(["e", "a", "o", "u", "A", "n", "c", "\u1100", "\u3131", "ᄀ", "i"])
        marks = "".join(chr(rng.randint(0x300, 0x36F)) for _ in range(rng.randint(1, 3)))
        jamo = chr(0x1100 + rng.randint(0, 18)) + chr(0x1161 + rng.randint(0, 20))
        out.append(base + marks + " " + jamo + rng.choice(WORDS))
    for _ in range(300):  # mixtures of everything
        pool = [rng.choice(WORDS), rng.choice(LOOKALIKES), rng.choice(WS), rng.choice(ml)[:20],
                "".join(rand_cp(rng) for _ in range(3)), str(rng.randint(0, 10 ** 9))]
        rng.shuffle(pool)
        out.append("".join(pool[:rng.randint(2, 6)]))
    out += ["", "\x00", "a\x00b", "\x7f", "\u00ff", "Ā", "Ġ", "ĠĠ", "\ufffd", "\ufeffBOM",
            "a" * 5000, "ab" * 3000, "😀" * 500, "東" * 1000, "1" * 2000, "\u0301" * 300]
    out.append("".join(rand_cp(rng) for _ in range(4000)))
    return out


def write_strings(strings, path):
    with open(path, "wb") as f:
        f.write(b"MVLSTR %d\n" % len(strings))
        for s in strings:
            b = s.encode("utf-8")
            f.write(b"%d\n" % len(b))
            f.write(b)
            f.write(b"\n")


def main():
    strings = make_strings()
    if len(sys.argv) == 4 and sys.argv[1] == "--show":
        tok = Tokenizer.from_file(os.path.join(ROOT, sys.argv[2], "tokenizer.json"))
        s = strings[int(sys.argv[3])]
        print(repr(s))
        print(tok.encode(s, add_special_tokens=False).ids)
        return
    write_strings(strings, os.path.join(ROOT, "golden_strings.bin"))
    bigs = big_inputs()
    for name in NAMES:
        tok = Tokenizer.from_file(os.path.join(ROOT, name, "tokenizer.json"))
        normalizes = tok.normalizer is not None
        lines = []
        for s in strings:
            ids = tok.encode(s, add_special_tokens=False).ids
            dec = tok.decode(ids, skip_special_tokens=False).encode("utf-8")
            if not normalizes:
                assert dec == s.encode("utf-8"), (name, s)
            lines.append("%d %016x" % (len(ids), ids_hash(ids, dec)))
        for k, b in enumerate(bigs):
            ids = tok.encode(b.decode("utf-8"), add_special_tokens=False).ids
            dec = tok.decode(ids, skip_special_tokens=False).encode("utf-8")
            lines.append("big%d %d %016x" % (k, len(ids), ids_hash(ids, dec)))
        r = Lcg(99)
        total = tok.get_vocab_size(with_added_tokens=True)
        for k in range(500):
            ids = [r.next() % total for _ in range(1 + r.next() % 12)]
            dec = tok.decode(ids, skip_special_tokens=False).encode("utf-8")
            lines.append("dec%d %d %016x" % (k, len(dec), fnv(FNV0, dec)))
        with open(os.path.join(ROOT, name, "golden.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print("%s: %d strings, %d big inputs, 500 decode sequences" % (name, len(strings), len(bigs)))


if __name__ == "__main__":
    main()
