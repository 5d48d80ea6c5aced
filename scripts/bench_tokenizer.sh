#!/usr/bin/env bash
# Tokenizer benchmark (issue 4): encode MB/s single-threaded on a mixed 10 MB
# corpus, ours vs Hugging Face `tokenizers` (Rust) side by side in one run,
# plus the load time of a synthetic 200,064-id tokenizer.json.
# Usage: scripts/bench_tokenizer.sh [BUILD_DIR]   (default build-bench; configured Release here)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-bench}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake -S "$root" -B "$build" -DMVL_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target bench_tokenizer >/dev/null
bench=$(find "$build" -name bench_tokenizer -type f -perm -u+x | head -1)

# 10 MB corpus: licences, man pages, headers, multilingual samples, random
# code points (deterministic; scripts/tokenizer_corpus.py).
ROOT=$root python3 - "$work/corpus.txt" <<'PY'
import os, random, sys
sys.path.insert(0, os.path.join(os.environ["ROOT"], "scripts"))
import tokenizer_corpus as c
rng = random.Random(5)
texts = c.machine_texts()
parts, n = [], 0
while n < 10_000_000:
    r = rng.random()
    if r < 0.75:
        t = rng.choice(texts)
    elif r < 0.95:
        t = "\n".join(rng.choice(c.MULTILINGUAL) for _ in range(20)) + "\n"
    else:
        t = "".join(chr(rng.choice([rng.randint(0x20, 0x7e), rng.randint(0x4e00, 0x9fff),
                                    rng.randint(0x600, 0x6ff), rng.randint(0x1f300, 0x1f64f)]))
                    for _ in range(2000)) + "\n"
    parts.append(t)
    n += len(t.encode())
open(sys.argv[1], "w", encoding="utf-8").write("".join(parts))
PY

"$bench" synth "$work"
echo "== $(date -u +%F) $(git -C "$root" rev-parse --short HEAD) $(lscpu | sed -n 's/^Model name: *//p')"
echo "-- load, synthetic 200,064-id tokenizer.json ($(du -k "$work/tokenizer.json" | cut -f1) KiB)"
"$bench" load "$work"
python3 - "$work/tokenizer.json" <<'PY'
import sys, time
from tokenizers import Tokenizer
ts = []
for _ in range(5):
    t = time.perf_counter(); Tokenizer.from_file(sys.argv[1]); ts.append((time.perf_counter() - t) * 1e3)
ts.sort()
print("load HF tokenizers: median %.1f ms (min %.1f, max %.1f)" % (ts[2], ts[0], ts[4]))
PY

for name in bpe8k-gpt2 bpe8k-o200k; do
  dir=$root/testdata/tokenizers/$name
  echo "-- encode $name"
  "$bench" encode "$dir" "$work/corpus.txt"
  RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false python3 - "$dir/tokenizer.json" "$work/corpus.txt" <<'PY'
import struct, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
data = open(sys.argv[2], "rb").read()
docs, pos = [], 0
while pos < len(data):  # same cut rule as bench_tokenizer.c
    end = min(pos + 10000, len(data))
    nl = data.find(b"\n", end)
    end = nl + 1 if nl >= 0 else len(data)
    docs.append(data[pos:end].decode("utf-8"))
    pos = end
best = 1e30
for _ in range(3):
    t = time.perf_counter()
    out = [tok.encode(d, add_special_tokens=False).ids for d in docs]
    best = min(best, time.perf_counter() - t)
h, n = 1469598103934665603, 0
M = (1 << 64) - 1
for ids in out:
    for b in struct.pack("<%di" % len(ids), *ids):
        h = ((h ^ b) * 1099511628211) & M
    n += len(ids)
print("encode HF tokenizers %s: %d bytes, %d ids, hash %016x, best %.1f ms, %.2f MB/s"
      % (tok.__class__.__name__, len(data), n, h, best * 1e3, len(data) / 1e6 / best))
PY
done
