#!/usr/bin/env python3
"""Image preprocessing benchmark for BENCHMARKS.md (issue 3), side by side:
minimax-vl (tests/bench_preprocess.c) and the Pillow + numpy reference
(vision.md §3 written literally, as in scripts/make_image_goldens.py).

    python3 scripts/bench_preprocess.py --bin BUILD/tests/bench_preprocess [--iters 20]

Inputs are generated here with Pillow: a 4000x3000 JPEG (quality 90, 4:2:0,
photo-like content with texture everywhere) and a 1000x700 RGB PNG. One
image = decode + anyres tiles + float32 normalisation on both sides; the
uint8 patches of both sides are compared first (CRC) so we time equal work.
Single-threaded: median ms per image. All cores: images/s with one worker
process per core for Pillow (the GIL) and one thread per core for C.
Peak memory: max RSS of the single-threaded C run against the decoded
image plus the uint8 and float32 outputs.
"""
import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_image_goldens as ref  # noqa: E402


def make_inputs(d):
    rng = np.random.default_rng(0)
    big = ref.content(4000, 3000, 50, noise=False).astype(np.int16)
    big += rng.normal(0, 12, big.shape).astype(np.int16)  # sensor-like texture everywhere
    jpg = os.path.join(d, "photo_4000x3000.jpg")
    Image.fromarray(np.clip(big, 0, 255).astype(np.uint8)).save(jpg, quality=90)
    png = os.path.join(d, "screenshot_1000x700.png")
    Image.fromarray(ref.content(1000, 700, 51)).save(png)
    return [jpg, png]


def pillow_one(path):
    im = Image.open(path)
    _, u8 = ref.reference_patches(im)
    return ref.normalize(u8).shape[0]


def pillow_worker(args):
    path, n = args
    for _ in range(n):
        pillow_one(path)
    return n


def pillow_single(path, iters):
    pillow_one(path)
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        pillow_one(path)
        t.append((time.perf_counter() - t0) * 1e3)
    return sorted(t)[len(t) // 2]


def pillow_parallel(path, iters, procs):
    with mp.Pool(procs) as pool:
        pool.map(pillow_worker, [(path, 1)] * procs)  # warm up
        t0 = time.perf_counter()
        pool.map(pillow_worker, [(path, iters)] * procs)
        return procs * iters / (time.perf_counter() - t0)


def run_c(binary, path, iters, threads):
    r = subprocess.run([binary, path, str(iters), str(threads)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{binary} failed: {r.stderr.strip()}")
    out = r.stdout
    return dict((k, float(v)) for k, v in (line.split() for line in out.strip().splitlines()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="path to the bench_preprocess binary")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        print(f"cores {a.threads}, Pillow {Image.__version__}, numpy {np.__version__}")
        print(f"{'image':28} {'C ms':>8} {'Pillow ms':>10} {'ratio':>6} {'C img/s':>9} {'Pillow img/s':>13} "
              f"{'ratio':>6} {'C peak MiB':>11} {'budget MiB':>11}")
        for path in make_inputs(d):
            im = Image.open(path)
            w, h = im.size
            (cw, ch), u8 = ref.reference_patches(im)
            n = u8.shape[0]
            decoded = w * h * 3
            budget = (3 * decoded + n * 336 * 336 * 3 * 5) / 2**20  # 3x decoded + uint8 and float32 tiles
            c1 = run_c(a.bin, path, a.iters, 1)
            cp = run_c(a.bin, path, max(2, a.iters // 2), a.threads)
            p1 = pillow_single(path, a.iters)
            pp = pillow_parallel(path, max(2, a.iters // 2), a.threads)
            print(f"{os.path.basename(path):28} {c1['ms_per_image']:8.2f} {p1:10.2f} {p1 / c1['ms_per_image']:6.2f} "
                  f"{cp['images_per_s']:9.1f} {pp:13.1f} {cp['images_per_s'] / pp:6.2f} "
                  f"{c1['peak_rss_mib']:11.1f} {budget:11.1f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
