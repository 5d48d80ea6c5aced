#!/usr/bin/env python3
"""--max-tiles / --max-image-tokens: the canvas `minimax-vl preprocess` picks
must be the one an independent Python version of vision.md §3.2 (best canvas)
and §4.2 (token count) picks among the released pinpoints that fit the cap,
or the 1x1 canvas when none fits; --no-exif keeps the stored orientation.
Usage: canvas_cap.py BIN SOURCE_DIR"""
import json
import os
import subprocess
import sys

BIN, SRC = sys.argv[1], sys.argv[2]
PINPOINTS = [(a * 336, b * 336) for a in range(1, 7) for b in range(1, 7) if a * b <= 18]  # §3.1
failures = []


def tokens(W, H, cw, ch):  # §4.2, integer floors
    fw, fh = cw // 14, ch // 14
    if W * fh > H * fw:
        cols, rows = fw, fh - 2 * ((fh - H * fw // W) // 2)
    else:
        rows, cols = fh, fw - 2 * ((fw - W * fh // H) // 2)
    return 576 + rows * (cols + 1)


def best(W, H, cands):  # §3.2
    best_eff, best_waste, pick = -1, None, None
    for cw, ch in cands:
        s = min(cw / W, ch / H)
        eff = min(int(W * s) * int(H * s), W * H)
        waste = cw * ch - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best_eff, best_waste, pick = eff, waste, (cw, ch)
    return pick


def expect(W, H, max_tiles, max_tokens):
    c = [(w, h) for w, h in PINPOINTS
         if (not max_tiles or (w // 336) * (h // 336) <= max_tiles) and (not max_tokens or tokens(W, H, w, h) <= max_tokens)]
    return best(W, H, c) if c else (336, 336)


cases = 0
for name in ("jpeg_1920x1080.jpg", "rgb_700x1000.png", "rgb_10x5000.png", "jpeg_640x480_progressive.jpg", "rgb_337x336.png"):
    for flags in ([], ["--max-tiles", "1"], ["--max-tiles", "4"], ["--max-tiles", "7"], ["--max-image-tokens", "100"],
                  ["--max-image-tokens", "2000"], ["--max-image-tokens", "5000"], ["--max-tiles", "6", "--max-image-tokens", "4000"]):
        p = subprocess.run([BIN, "preprocess", os.path.join(SRC, "testdata", "images", name), *flags],
                           capture_output=True, text=True)
        o = json.loads(p.stdout) if p.returncode == 0 else {}
        t = dict(zip(flags[::2], map(int, flags[1::2])))
        want = expect(o.get("width", 1), o.get("height", 1), t.get("--max-tiles", 0), t.get("--max-image-tokens", 0))
        cases += 1
        if tuple(o.get("canvas", ())) != want or o.get("image_tokens") != tokens(o["width"], o["height"], *want):
            failures.append(f"{name} {flags}: got {o}, want canvas {want}")
p = subprocess.run([BIN, "preprocess", os.path.join(SRC, "testdata", "images", "jpeg_exif6_600x400.jpg"), "--no-exif"],
                   capture_output=True, text=True)
if json.loads(p.stdout)[("width")] != 600:
    failures.append(f"--no-exif still rotated: {p.stdout}")
# The model commands share the cap: fewer prompt tokens with it.
img = os.path.join(SRC, "testdata", "images", "jpeg_640x480_progressive.jpg")
n = [json.loads(subprocess.run([BIN, "caption", img, "-n", "1", "--json", *f], capture_output=True, text=True).stdout)["prompt_tokens"]
     for f in ([], ["--max-tiles", "1"])]
if not n[1] == n[0] - tokens(640, 480, 672, 672) + tokens(640, 480, 336, 336):
    failures.append(f"caption --max-tiles 1: {n[1]} prompt tokens, uncapped {n[0]}")
for f in failures:
    print("FAIL:", f)
print(f"{cases} caps checked, {len(failures)} failed")
sys.exit(1 if failures else 0)
