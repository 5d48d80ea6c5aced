#!/usr/bin/env python3
"""JPEG inputs for the end-to-end benchmark (bench_vit_cuda e2e) and a check
of GPU JPEG decoding (nvJPEG through torchvision) against libjpeg-turbo
(through Pillow, which our decoder matches).

  jpeg_variants.py write DIR      writes DIR/{wide,wide444,wideprog,widegray}.jpg:
      the 2016x1008 benchmark image of vit_parity_bench.py (baseline 4:2:0,
      quality 90, what Pillow writes by default), the same at 4:4:4,
      progressive 4:2:0, and grayscale
  jpeg_variants.py nvjpeg DIR     per file: pixels (and samples) where
      torchvision.io.decode_jpeg(device="cuda") differs from Pillow, the
      largest difference, and both decode times (median of 20)
"""
import os
import sys
import time

import numpy as np
from PIL import Image


def bench_image():
    # as vit_parity_bench.py: gradients plus uniform noise in -20..20
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:1008, 0:2016]
    img = np.stack([(xx * 255 // 2015), (yy * 255 // 1007), ((xx + yy) % 256)], -1).astype(np.uint8)
    return np.clip(img.astype(np.int16) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)


def write(d):
    os.makedirs(d, exist_ok=True)
    im = Image.fromarray(bench_image())
    im.save(os.path.join(d, "wide.jpg"), quality=90)
    im.save(os.path.join(d, "wide444.jpg"), quality=90, subsampling=0)
    im.save(os.path.join(d, "wideprog.jpg"), quality=90, progressive=True)
    im.convert("L").save(os.path.join(d, "widegray.jpg"), quality=90)
    for f in sorted(os.listdir(d)):
        if f.endswith(".jpg"):
            print(f, os.path.getsize(os.path.join(d, f)), "bytes")


def median_ms(fn, n=20):
    fn()
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    return sorted(t)[n // 2]


def nvjpeg(d):
    import torch
    import torchvision
    from torchvision.io import decode_jpeg, ImageReadMode
    print("torchvision", torchvision.__version__, "torch", torch.__version__)
    print("| file | pixels differing | samples differing | max diff | Pillow decode ms | nvJPEG decode ms |")
    print("|---|---|---|---|---|---|")
    for f in ("wide.jpg", "wide444.jpg", "wideprog.jpg", "widegray.jpg"):
        p = os.path.join(d, f)
        raw = open(p, "rb").read()
        ref = np.asarray(Image.open(p).convert("RGB"))
        data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        try:
            def gpu():
                out = decode_jpeg(data, mode=ImageReadMode.RGB, device="cuda")
                torch.cuda.synchronize()
                return out
            got = gpu().permute(1, 2, 0).cpu().numpy()
            diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
            gms = median_ms(gpu)
            res = (int((diff.max(-1) > 0).sum()), int((diff > 0).sum()), int(diff.max()), "%.2f" % gms)
        except Exception as e:  # noqa: BLE001 (report whatever torchvision says)
            res = ("-", "-", "-", "error: %s" % e)
        pms = median_ms(lambda: np.asarray(Image.open(p).convert("RGB")))
        print("| %s | %s of %d | %s | %s | %.2f | %s |" % (f, res[0], ref.shape[0] * ref.shape[1], res[1], res[2],
                                                         pms, res[3]))


if __name__ == "__main__":
    {"write": write, "nvjpeg": nvjpeg}[sys.argv[1]](sys.argv[2])
