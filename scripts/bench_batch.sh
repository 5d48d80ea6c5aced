#!/usr/bin/env bash
# Batch throughput (issue 6, BENCHMARKS.md "Batch"): N generated document-like
# pages (JPEG, text lines on white, Pillow), captioned by `minimax-vl batch` on
# the CPU with the bundled tiny model, with the preprocessing pipeline
# (--workers W, decode+preprocess on threads ahead of the model) and without
# it (--workers 0, inline on the main thread), side by side in one run.
# Usage: scripts/bench_batch.sh [BIN] [N] [W] [batch flags...]   (defaults: build/minimax-vl 100 2)
# e.g. scripts/bench_batch.sh build/minimax-vl 100 2 --max-tiles 1 -t 1
set -euo pipefail
bin=${1:-build/minimax-vl} n=${2:-100} workers=${3:-2}
shift $(($# < 3 ? $# : 3))
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 - "$dir/pages" "$n" <<'PY'
import os, random, sys
from PIL import Image, ImageDraw
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out)
rng = random.Random(6)
words = "the of model image token vision batch invoice total amount date page section table figure".split()
for i in range(n):
    w, h = rng.choice([(1240, 1754), (1700, 2200), (1654, 2339), (2200, 1700), (1024, 1448)])  # A4/letter at 150-200 dpi
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    y = 60
    while y < h - 80:
        if rng.random() < 0.08:  # a table or figure block
            d.rectangle([80, y, w - 80, y + 120], outline="black", width=2)
            y += 140
            continue
        line = " ".join(rng.choice(words) for _ in range(rng.randint(6, 14)))
        d.text((80, y), line, fill=(20, 20, 20))
        y += 22
    im.save(os.path.join(out, f"page{i:03d}.jpg"), quality=90)
PY
for w in 0 "$workers"; do
  "$bin" batch "$dir/pages" -o "$dir/out$w.jsonl" -n 8 --workers "$w" --json "$@" 2>/dev/null >"$dir/sum$w.json"
  python3 - "$dir/sum$w.json" "$dir/out$w.jsonl" "$w" "$*" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
recs = [json.loads(l) for l in open(sys.argv[2])]
pre = sum(r["ms_preprocess"] for r in recs) / len(recs)
tok = sum(r["prompt_tokens"] for r in recs) / len(recs)
print(f"--workers {sys.argv[3]} {sys.argv[4]}: {s['succeeded']} images in {s['seconds']:.2f} s = {s['images_per_s']:.2f} images/s "
      f"(mean decode+preprocess {pre:.1f} ms/image, mean prompt {tok:.0f} tokens)")
PY
done
