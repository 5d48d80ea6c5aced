#!/usr/bin/env python3
"""Greedy token ids of `minimax-vl caption`, `ask` and `chat` on the tiny model,
computed independently of minimax-vl (issue 6 goldens).

The prompt is written out from vision.md §5.1 as text, encoded with Hugging
Face `tokenizers` (not our tokenizer), its `<image>` expanded to the count of
vision.md §4.2; the pixels come from Pillow following §3 (make_goldens.py);
the model is transformers' CLIPVisionModel + MiniMaxForCausalLM with the
patches and checks of make_goldens.py. Greedy decoding recomputes the whole
sequence for every token (no cache) and stops at the tokenizer's eos.

Two steps, because the torch machine's Python may lack Pillow 11.0.0:
    python3 tests/reference/make_cli_goldens.py --pixels .device/cli_px.npz   # here, Pillow 11.0.0
    python3 tests/reference/make_cli_goldens.py OUT.json --pixels-from .device/cli_px.npz  # torch machine
Output: testdata/goldens/cli.json.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_goldens as mg  # noqa: E402

MODEL = os.path.join(mg.ROOT, "testdata", "tiny-random")
IMAGE = "testdata/images/jpeg_640x480_progressive.jpg"
USER, AI, EOS = "<beginning_of_sentence>user name=user\n", "<beginning_of_sentence>ai name=assistant\n", "<end_of_sentence>"
CASES = [  # (name, command, turns of (text, with_image), max tokens)
    ("caption", "caption", [("Describe this image.", True)], 16),
    ("ask", "ask", [("What colour is the largest shape?", True)], 16),
    ("chat", "chat", [("Describe this image.", True), ("And the colours?", False)], 8),
]


def main():
    if sys.argv[1] == "--pixels":
        pp = json.load(open(os.path.join(MODEL, "preprocessor_config.json")))
        px, W, H, c, r = mg.preprocess(os.path.join(mg.ROOT, IMAGE), [tuple(p) for p in pp["image_grid_pinpoints"]])
        np.savez(sys.argv[2], px=px, geom=np.array([W, H, c, r]))
        return
    out = sys.argv[1]
    d = np.load(sys.argv[3])
    px, (W, H, c, r) = d["px"], (int(v) for v in d["geom"])
    import torch
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    eos, img_id = tok.token_to_id(EOS), tok.token_to_id("<image>")
    count = mg.token_count(W, H, c, r)
    ref = mg.Reference(MODEL, torch.float32, torch, [])
    packed = ref.image(px, W, H, c, r)[2]
    assert packed.shape[0] == count, (packed.shape, count)

    def embed(ids):
        with torch.no_grad():
            e = ref.lm.model.embed_tokens(torch.tensor(ids)).clone()
        pos = [i for i, x in enumerate(ids) if x == img_id]
        if pos:
            assert len(pos) == count
            e[pos] = packed
        return e

    def greedy(ids, n):
        got = []
        for _ in range(n):
            with torch.no_grad():
                t = int(torch.argmax(ref.lm(inputs_embeds=embed(ids + got)[None], use_cache=False).logits[0, -1]))
            got.append(t)
            if t == eos:
                break
        return got

    result = {"model": "testdata/tiny-random", "image": IMAGE, "image_tokens": count, "cases": []}
    for name, cmd, turns, n in CASES:
        ids, answers = [], []
        for k, (text, with_image) in enumerate(turns):
            if k > 0:  # the previous answer is closed, then the next user turn
                closed = answers[-1] and answers[-1][-1] == eos
                ids += tok.encode(("\n" if closed else EOS + "\n"), add_special_tokens=False).ids
            prompt = USER + ("<image>" if with_image else "") + text + EOS + "\n" + AI
            enc = tok.encode(prompt, add_special_tokens=False).ids
            exp = []
            for x in enc:
                exp += [img_id] * count if x == img_id else [x]
            ids += exp
            ans = greedy(ids, n)
            answers.append(ans)
            ids += ans
        result["cases"].append({"name": name, "command": cmd, "turns": [t for t, _ in turns], "max_tokens": n,
                                "ids": answers})
        print(name, answers, flush=True)
    json.dump(result, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
