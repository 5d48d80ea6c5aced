#!/usr/bin/env python3
"""Synthetic images for the demo model (issue 9): shapes, signs and small pages.

Every sample is a pure function of (base seed, index): numpy draws the scene
(shapes as exact pixel masks, text with the 5x7 bitmap font below, scaled by an
integer), so the pixels do not depend on the Pillow version or on any font
file. Each sample has a caption (the answer to "Describe this image.") and
question-answer pairs typed colour / count / shape / position / text.

The task is deliberately closed (scripts/demo/README.md, "Task"): a shapes scene
is 1-3 objects of ONE shape and ONE colour; signs are 1-2 words and pages a
one-word title over 2-3 lines, all from a 12-word vocabulary, drawn large
(font scale 6-12 for signs, 6-10 titles, 4-7 page lines). Canvases lean to
1-2 tiles (cheap steps) with some 2x2 and extreme-aspect images.

    gen.py OUTDIR --seed S --n N     # OUTDIR/{k:04d}.png + OUTDIR/samples.jsonl

Seeds: training draws base seed 1 (as many indices as it needs); the held-out
evaluation uses base seed 9001, which training never touches.
"""
import argparse
import json
import os

import numpy as np

TRAIN_SEED, EVAL_SEED = 1, 9001
CAPTION_PROMPT = "Describe this image."

COLOURS = {"red": (215, 35, 35), "green": (30, 150, 50), "blue": (35, 70, 215), "yellow": (235, 195, 20),
           "purple": (135, 50, 175), "black": (25, 25, 25)}
SHAPE_COLOURS = ["red", "green", "blue", "yellow", "purple"]
TEXT_COLOURS = ["black", "blue", "red"]
SHAPES = ["circle", "square", "triangle", "star"]
NUMBERS = ["zero", "one", "two", "three"]
COLUMNS = ["left", "center", "right"]
# one token each after a space in the committed tokenizer (make_tokenizer.py, trained on an earlier,
# wider word list); most are one token bare too
WORDS = "moon wind fire king hill pen key owl ice wave tree bird".split()

_FONT_ROWS = {
    "a": ".....|.....|.###.|....#|.####|#...#|.####", "b": "#....|#....|####.|#...#|#...#|#...#|####.",
    "c": ".....|.....|.####|#....|#....|#....|.####", "d": "....#|....#|.####|#...#|#...#|#...#|.####",
    "e": ".....|.....|.###.|#...#|#####|#....|.###.", "f": "..##.|.#...|.#...|####.|.#...|.#...|.#...",
    "g": ".....|.####|#...#|#...#|.####|....#|.###.", "h": "#....|#....|####.|#...#|#...#|#...#|#...#",
    "i": "..#..|.....|.##..|..#..|..#..|..#..|.###.", "j": "...#.|.....|..##.|...#.|...#.|#..#.|.##..",
    "k": "#....|#....|#..#.|#.#..|##...|#.#..|#..#.", "l": ".##..|..#..|..#..|..#..|..#..|..#..|.###.",
    "m": ".....|.....|##.#.|#.#.#|#.#.#|#.#.#|#.#.#", "n": ".....|.....|####.|#...#|#...#|#...#|#...#",
    "o": ".....|.....|.###.|#...#|#...#|#...#|.###.", "p": ".....|####.|#...#|#...#|####.|#....|#....",
    "q": ".....|.####|#...#|#...#|.####|....#|....#", "r": ".....|.....|#.##.|##..#|#....|#....|#....",
    "s": ".....|.....|.####|#....|.###.|....#|####.", "t": ".#...|.#...|####.|.#...|.#...|.#..#|..##.",
    "u": ".....|.....|#...#|#...#|#...#|#..##|.##.#", "v": ".....|.....|#...#|#...#|#...#|.#.#.|..#..",
    "w": ".....|.....|#...#|#...#|#.#.#|#.#.#|.#.#.", "x": ".....|.....|#...#|.#.#.|..#..|.#.#.|#...#",
    "y": ".....|#...#|#...#|#...#|.####|....#|.###.", "z": ".....|.....|#####|...#.|..#..|.#...|#####",
}
FONT = {c: np.array([[ch == "#" for ch in row] for row in rows.split("|")]) for c, rows in _FONT_ROWS.items()}


def text_size(text, s):
    """Pixel width and height of `text` at integer scale s (advance 6s per char, 7s tall)."""
    return max(0, 6 * s * len(text) - s), 7 * s


def draw_text(img, text, x, y, s, rgb):
    for i, c in enumerate(text):
        if c != " ":
            m = np.kron(FONT[c], np.ones((s, s), bool))
            img[y:y + 7 * s, x + 6 * s * i:x + 6 * s * i + 5 * s][m] = rgb


def shape_mask(kind, cx, cy, r, H, W):
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    dx, dy = xx - cx, yy - cy
    if kind == "circle":
        return dx * dx + dy * dy <= r * r
    if kind == "square":
        return (np.abs(dx) <= 0.82 * r) & (np.abs(dy) <= 0.82 * r)
    if kind == "diamond":
        return np.abs(dx) / (0.75 * r) + np.abs(dy) / r <= 1
    if kind == "triangle":
        pts = [(0, -r), (0.95 * r, 0.8 * r), (-0.95 * r, 0.8 * r)]
    else:  # star: 5 points, inner radius 0.45 r
        ang = -np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        pts = list(zip(rad * np.cos(ang), rad * np.sin(ang)))
    inside = np.zeros((H, W), bool)  # even-odd ray casting over the polygon's edges
    for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1]):
        if y1 == y2:
            continue
        cross = ((y1 > dy) != (y2 > dy)) & (dx < (x2 - x1) * (dy - y1) / (y2 - y1) + x1)
        inside ^= cross
    return inside


def image_size(rng):
    """(W, H): half fit one 336 px tile, a quarter two side by side, the rest 2x2-ish or extreme aspects."""
    r = rng.random()
    if r < 0.5:
        W, H = rng.integers(200, 337, 2)
    elif r < 0.75:
        W, H = rng.integers(340, 673), rng.integers(200, 337)
    elif r < 0.9:
        W, H = rng.integers(340, 601, 2)
    else:
        W, H = rng.integers(700, 1001), rng.integers(160, 301)
    if rng.random() < 0.5:
        W, H = H, W
    return int(W), int(H)


def background(rng, H, W):
    base = np.array([255, 255, 255]) if rng.random() < 0.5 else rng.integers(205, 256, 3)
    return np.broadcast_to(base.astype(np.uint8), (H, W, 3)).copy()


def plural(n, noun):
    return f"{NUMBERS[n]} {noun}" + ("s" if n != 1 else "")


def scene_shapes(rng):
    W, H = image_size(rng)
    img = background(rng, H, W)
    kind = SHAPES[int(rng.integers(len(SHAPES)))]
    col = SHAPE_COLOURS[int(rng.integers(len(SHAPE_COLOURS)))]
    n = int(rng.integers(1, 4))
    m = min(W, H)
    placed = []
    for attempt in range(400):
        r = max(14.0, m * rng.uniform(0.10, 0.18 if n == 1 else 0.14) * (0.97 ** (attempt // 40)))
        if n == 1:  # a single object sits in the left, center or right third
            j = int(rng.integers(3))
            cx = (j + 0.5) * W / 3 + rng.uniform(-0.06, 0.06) * W
            cx, cy = min(max(cx, r + 2), W - r - 2), rng.uniform(r + 2, H - r - 2)
            placed = [(cx, cy, r)]
            break
        cx, cy = rng.uniform(r + 3, W - r - 3), rng.uniform(r + 3, H - r - 3)
        if all((cx - x) ** 2 + (cy - y) ** 2 > (r + q + 8) ** 2 for x, y, q in placed):
            placed.append((cx, cy, r))
            if len(placed) == n:
                break
    if len(placed) < n:
        return None
    for cx, cy, r in placed:
        img[shape_mask(kind, cx, cy, r, H, W)] = COLOURS[col]
    qa = [("colour", f"What colour is the {kind}?", col), ("shape", "What shape is in the image?", kind),
          ("count", f"How many {kind}s are there?", str(n))]
    if n == 1:
        qa.append(("position", f"Where is the {kind}?", COLUMNS[j]))
    return img, plural(n, f"{col} {kind}") + ".", qa


def words(rng, n):
    return " ".join(rng.choice(WORDS, n, replace=False).tolist())


def scene_sign(rng):
    W, H = image_size(rng)
    img = background(rng, H, W)
    text = words(rng, 1 if rng.random() < 0.6 else 2)
    tw1, th1 = text_size(text, 1)
    smax = min(12, (W - 16) // tw1, (H - 16) // th1)
    if smax < 6:
        return None
    s = int(rng.integers(6, smax + 1))
    tw, th = text_size(text, s)
    colour = TEXT_COLOURS[int(rng.integers(len(TEXT_COLOURS)))]
    draw_text(img, text, int(rng.integers(8, W - tw - 7)), int(rng.integers(8, H - th - 7)), s, COLOURS[colour])
    ws = text.split()
    qa = [("text", "What does the sign say?", text), ("text", "What is the first word?", ws[0]),
          ("count", "How many words are there?", str(len(ws))), ("colour", "What colour is the text?", colour)]
    return img, f'a sign that says "{text}".', qa


def scene_page(rng):
    W, H = image_size(rng)
    img = np.full((H, W, 3), 255, np.uint8) if rng.random() < 0.7 else background(rng, H, W)
    ts, ls = int(rng.integers(6, 11)), int(rng.integers(4, 8))
    nlines = int(rng.integers(2, 4))
    title = words(rng, 1)
    lines = [words(rng, int(rng.integers(1, 3))) for _ in range(nlines)]
    margin = int(rng.integers(8, 20))
    gap = int(rng.integers(2, 5)) * ls
    need_h = margin * 2 + 7 * ts + 2 * ls + nlines * (7 * ls + gap)
    need_w = margin * 2 + max([text_size(title, ts)[0]] + [text_size(t, ls)[0] for t in lines])
    if need_w > W or need_h > H:
        return None
    ink = "black" if rng.random() < 0.7 else TEXT_COLOURS[int(rng.integers(1, len(TEXT_COLOURS)))]
    x0, y = margin + int(rng.integers(0, W - need_w + 1)), margin + int(rng.integers(0, H - need_h + 1))
    draw_text(img, title, x0, y, ts, COLOURS[ink])
    y += 7 * ts + 2 * ls + gap
    for t in lines:
        draw_text(img, t, x0, y, ls, COLOURS[ink])
        y += 7 * ls + gap
    k = int(rng.integers(1, nlines + 1))
    qa = [("text", "What is the title?", title), ("text", f"What is the first word of line {k}?", lines[k - 1].split()[0]),
          ("count", "How many lines are there?", str(nlines)), ("colour", "What colour is the text?", ink)]
    return img, f'a page titled "{title}" with {plural(nlines, "line")} of text.', qa


def sample(base_seed, index):
    """(uint8 HxWx3 image, caption, [(type, question, answer)]) for one index; pure in its arguments."""
    rng = np.random.default_rng([base_seed, index])
    kind = rng.random()
    make = scene_shapes if kind < 0.4 else scene_sign if kind < 0.7 else scene_page
    while True:
        out = make(rng)
        if out is not None:
            return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=EVAL_SEED)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--start", type=int, default=0)
    a = ap.parse_args()
    from PIL import Image
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "samples.jsonl"), "w") as f:
        for k in range(a.start, a.start + a.n):
            img, cap, qa = sample(a.seed, k)
            name = f"{k:04d}.png"
            Image.fromarray(img, "RGB").save(os.path.join(a.out, name))
            f.write(json.dumps({"image": name, "index": k, "caption": cap, "qa": qa}) + "\n")


if __name__ == "__main__":
    main()
