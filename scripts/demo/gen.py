#!/usr/bin/env python3
"""Synthetic images for the demo model (issue 9): shapes, signs and small pages.

Every sample is a pure function of (base seed, index): numpy draws the scene
(shapes as exact pixel masks, text with the 5x7 bitmap font below, scaled by an
integer), so the pixels do not depend on the Pillow version or on any font
file. Each sample has a caption (the answer to "Describe this image.") and
question-answer pairs typed colour / count / shape / position / text.

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
           "orange": (240, 125, 20), "purple": (135, 50, 175), "black": (25, 25, 25)}
TEXT_COLOURS = ["black", "blue", "red", "green", "purple"]
SHAPES = ["circle", "square", "triangle", "star", "diamond"]  # the caption lists groups in this order
NUMBERS = ["zero", "one", "two", "three", "four"]
CELLS = [["top left", "top", "top right"], ["left", "center", "right"], ["bottom left", "bottom", "bottom right"]]
WORDS = ("sun moon tree bird fish cat dog lake rock wind rain snow fire gold iron milk rose king ship road hill "
         "door book lamp cake bell wolf bear frog leaf seed corn salt ink map box cup pen key owl fox bee sky sea "
         "ice home wave park").split()

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


def image_size(rng, lo=200, hi=700):
    r = rng.random()
    if r < 0.55:
        W, H = rng.integers(lo, 421, 2)
    elif r < 0.85:
        W, H = rng.integers(300, 601, 2)
    else:
        W, H = rng.integers(500, hi + 1), rng.integers(lo, 321)
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
    ngroups = int(rng.choice([1, 1, 2, 2, 3]))
    kinds = sorted(rng.choice(len(SHAPES), ngroups, replace=False).tolist())
    cols = rng.choice(list(COLOURS), ngroups, replace=False).tolist()
    counts = [1] * ngroups if ngroups == 1 and rng.random() < 0.4 else rng.integers(1, 4, ngroups).tolist()
    total, m = sum(counts), min(W, H)
    placed, qa = [], []
    single = total == 1
    for attempt in range(400):
        r = m * rng.uniform(0.07, 0.13 if total > 3 else 0.17) * (0.97 ** (attempt // 40))
        r = max(r, 12.0)
        if single:
            ci, cj = rng.integers(0, 3, 2)
            cx = (cj + 0.5) * W / 3 + rng.uniform(-0.08, 0.08) * W
            cy = (ci + 0.5) * H / 3 + rng.uniform(-0.08, 0.08) * H
            cx, cy = min(max(cx, r + 2), W - r - 2), min(max(cy, r + 2), H - r - 2)
            placed = [(cx, cy, r)]
            break
        cx, cy = rng.uniform(r + 3, W - r - 3), rng.uniform(r + 3, H - r - 3)
        if all((cx - x) ** 2 + (cy - y) ** 2 > (r + q + 6) ** 2 for x, y, q in placed):
            placed.append((cx, cy, r))
            if len(placed) == total:
                break
    if len(placed) < total:
        return None
    k = 0
    for g in range(ngroups):
        for _ in range(counts[g]):
            cx, cy, r = placed[k]
            img[shape_mask(SHAPES[kinds[g]], cx, cy, r, H, W)] = COLOURS[cols[g]]
            k += 1
    parts = [f"{plural(counts[g], cols[g] + ' ' + SHAPES[kinds[g]])}" for g in range(ngroups)]
    cap = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    if single:
        cap += " in the " + CELLS[ci][cj]
        qa.append(("position", f"Where is the {SHAPES[kinds[0]]}?", CELLS[ci][cj]))
    for g in range(ngroups):
        qa.append(("colour", f"What colour is the {SHAPES[kinds[g]]}?", cols[g]))
        qa.append(("shape", f"What shape is the {cols[g]} one?", SHAPES[kinds[g]]))
        qa.append(("count", f"How many {SHAPES[kinds[g]]}s are there?", str(counts[g])))
    absent = [s for i, s in enumerate(SHAPES) if i not in kinds]
    qa.append(("count", f"How many {absent[int(rng.integers(len(absent)))]}s are there?", "0"))
    return img, cap + ".", qa


def words(rng, n):
    return " ".join(rng.choice(WORDS, n, replace=False).tolist())


def scene_sign(rng):
    W, H = image_size(rng)
    img = background(rng, H, W)
    for _ in range(50):
        text, s = words(rng, int(rng.integers(1, 4))), int(rng.integers(2, 6))
        tw, th = text_size(text, s)
        if tw + 16 <= W and th + 16 <= H:
            break
    else:
        return None
    colour = TEXT_COLOURS[int(rng.integers(len(TEXT_COLOURS)))]
    draw_text(img, text, int(rng.integers(8, W - tw - 7)), int(rng.integers(8, H - th - 7)), s, COLOURS[colour])
    ws = text.split()
    qa = [("text", "What does the sign say?", text), ("text", "What is the first word?", ws[0]),
          ("count", "How many words are there?", str(len(ws))), ("colour", "What colour is the text?", colour)]
    return img, f'a sign that says "{text}".', qa


def scene_page(rng):
    W, H = image_size(rng)
    img = np.full((H, W, 3), 255, np.uint8) if rng.random() < 0.7 else background(rng, H, W)
    ts, ls = int(rng.integers(3, 5)), int(rng.integers(2, 4))
    nlines = int(rng.integers(2, 5))
    title = words(rng, int(rng.integers(1, 3)))
    lines = [words(rng, int(rng.integers(2, 5))) for _ in range(nlines)]
    margin = int(rng.integers(10, 30))
    gap = int(rng.integers(4, 10)) * ls
    need_h = margin * 2 + 7 * ts + 3 * ls + nlines * (7 * ls + gap)
    need_w = margin * 2 + max([text_size(title, ts)[0]] + [text_size(t, ls)[0] for t in lines])
    if need_w > W or need_h > H:
        return None
    ink = COLOURS["black"] if rng.random() < 0.7 else COLOURS[TEXT_COLOURS[int(rng.integers(1, 5))]]
    x0, y = margin + int(rng.integers(0, W - need_w + 1)), margin + int(rng.integers(0, H - need_h + 1))
    draw_text(img, title, x0, y, ts, ink)
    y += 7 * ts + 3 * ls + gap
    for t in lines:
        draw_text(img, t, x0, y, ls, ink)
        y += 7 * ls + gap
    k = int(rng.integers(1, nlines + 1))
    qa = [("text", "What is the title?", title), ("text", f"What is the first word of line {k}?", lines[k - 1].split()[0]),
          ("count", "How many lines are there?", str(nlines))]
    return img, f'a page titled "{title}" with {plural(nlines, "line")} of text.', qa


def sample(base_seed, index):
    """(uint8 HxWx3 image, caption, [(type, question, answer)]) for one index; pure in its arguments."""
    rng = np.random.default_rng([base_seed, index])
    kind = rng.random()
    make = scene_shapes if kind < 0.45 else scene_sign if kind < 0.7 else scene_page
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
