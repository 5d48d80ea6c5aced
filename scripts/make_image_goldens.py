#!/usr/bin/env python3
"""Test images and Pillow goldens for vision/ (issue 3).

    python3 scripts/make_image_goldens.py [--images] [--goldens]

--images writes deterministic test images to testdata/images/ (PNG variants
through a small PNG writer below so every colour type, bit depth, tRNS and
interlace case exists; JPEGs through Pillow, YCCK through scripts/make_ycck.c)
and the broken-file corpus to testdata/images/bad/.

--goldens decodes every image with Pillow and runs the reference anyres
preprocessing written literally from vision.md §3 (PIL resize BICUBIC on the
image in its own mode, paste onto a black RGB canvas, row-major crops,
squashed thumbnail first, ToTensor + Normalize in float32), and stores CRC32s
of the decoded pixels, the uint8 patches and the float32 tensor in
testdata/images/goldens.json, with the token counts of 100,000 random sizes
computed independently (LLaVA-NeXT style: build the feature grid, unpad it).
Nothing here calls minimax-vl.
"""
import argparse
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
from PIL import Image, ImageOps, features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMG = os.path.join(ROOT, "testdata", "images")
BAD = os.path.join(IMG, "bad")

PINPOINTS = [(a * 336, b * 336) for a in range(1, 7) for b in range(1, 7) if a * b <= 18]
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
SIZE = 336


# ---- deterministic content ------------------------------------------------

def content(w, h, seed, noise=True):
    """Photo-like RGB: gradients, waves, flat boxes, optional noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 110 * np.sin(xx / (w / 5 + 1) + seed) * np.cos(yy / (h / 4 + 1))
    g = 255 * xx / max(w - 1, 1)
    b = 255 * (1 - yy / max(h - 1, 1))
    img = np.stack([r, g, b], -1)
    for _ in range(6):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(1, max(2, w // 3)), y0 + rng.integers(1, max(2, h // 3))
        img[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    if noise:  # a textured patch; noise everywhere would bloat testdata
        nw, nh = min(w, 80), min(h, 80)
        x0, y0 = rng.integers(0, w - nw + 1), rng.integers(0, h - nh + 1)
        img[y0:y0 + nh, x0:x0 + nw] += rng.normal(0, 25, (nh, nw, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---- a small PNG writer (any colour type, depth, tRNS, Adam7) -------------

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _rows(a, depth, channels):
    """Serialise an (h, w[, c]) array as PNG scanlines with the Sub filter."""
    h = a.shape[0]
    if depth < 8:
        per = 8 // depth
        w = a.shape[1]
        pad = (-w) % per
        q = np.pad(a, ((0, 0), (0, pad))).reshape(h, -1, per).astype(np.uint16)
        packed = np.zeros(q.shape[:2], np.uint16)
        for i in range(per):
            packed |= q[:, :, i] << (8 - depth * (i + 1))
        raw, bpp = packed.astype(np.uint8), 1
    elif depth == 16:
        raw = a.astype(">u2").view(np.uint8).reshape(h, -1)
        bpp = 2 * channels
    else:
        raw, bpp = a.reshape(h, -1).astype(np.uint8), channels
    sub = raw.copy()
    sub[:, bpp:] = raw[:, bpp:] - raw[:, :-bpp]
    return b"".join(b"\x01" + bytes(row) for row in sub)


def write_png(path, a, ctype, depth, palette=None, trns=None, interlace=False, exif=None):
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    h, w = a.shape[:2]
    if interlace:
        data = b""
        for x0, y0, dx, dy in ADAM7:
            sub = a[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                data += _rows(sub, depth, channels)
    else:
        data = _rows(a, depth, channels)
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace)))
    if palette is not None:
        out += _chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        out += _chunk(b"tRNS", trns)
    if exif is not None:
        out += _chunk(b"eXIf", exif)
    out += _chunk(b"IDAT", zlib.compress(data, 9)) + _chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(out)


def exif_bytes(orientation):
    e = Image.Exif()
    e[0x0112] = orientation
    return e.tobytes()


def make_images():
    os.makedirs(BAD, exist_ok=True)
    P = lambda n: os.path.join(IMG, n)
    c = content
    # Sizes from issue 3 and the §4.3 worked examples.
    write_png(P("rgb_1x1.png"), c(1, 1, 1), 2, 8)
    write_png(P("rgb_14x14.png"), c(14, 14, 2), 2, 8)
    write_png(P("rgb_335x336.png"), c(335, 336, 3), 2, 8)
    write_png(P("rgb_337x336.png"), c(337, 336, 4), 2, 8)
    write_png(P("rgb_336x336.png"), c(336, 336, 5), 2, 8)
    write_png(P("rgb_5000x10.png"), c(5000, 10, 6), 2, 8)
    write_png(P("rgb_10x5000.png"), c(10, 5000, 7), 2, 8)
    write_png(P("rgb_700x1000.png"), c(700, 1000, 8, noise=False), 2, 8)
    Image.fromarray(c(2016, 2016, 9, noise=False)).save(P("jpeg_2016x2016.jpg"), quality=70)
    Image.fromarray(c(4000, 3000, 10, noise=False)).save(P("photo_4000x3000.jpg"), quality=70)
    Image.fromarray(c(1000, 700, 11)).save(P("jpeg_1000x700.jpg"), quality=90)  # 4:2:0 baseline
    Image.fromarray(c(1920, 1080, 12, noise=False)).save(P("jpeg_1920x1080.jpg"), quality=85)
    Image.fromarray(c(640, 480, 13)).save(P("jpeg_640x480_progressive.jpg"), quality=90, progressive=True)
    Image.fromarray(c(1024, 768, 14, noise=False)).save(P("jpeg_1024x768_444.jpg"), quality=95, subsampling=0)
    Image.fromarray(c(333, 251, 15)).save(P("jpeg_333x251_422.jpg"), quality=88, subsampling=1)
    Image.fromarray(c(500, 375, 16)[:, :, 1]).save(P("jpeg_gray_500x375.jpg"), quality=90)
    cmyk = np.concatenate([c(400, 300, 17), c(400, 300, 18)[:, :, :1]], -1)
    Image.fromarray(cmyk, "CMYK").save(P("jpeg_cmyk_400x300.jpg"), quality=90)
    helper = os.path.join(tempfile.mkdtemp(), "make_ycck")
    subprocess.run(["cc", "-O1", "-o", helper, os.path.join(ROOT, "scripts", "make_ycck.c"), "-ljpeg"], check=True)
    ycck = np.concatenate([c(301, 203, 19), c(301, 203, 20)[:, :, :1]], -1)
    subprocess.run([helper, "301", "203", P("jpeg_ycck_301x203.jpg")], input=ycck.tobytes(), check=True)
    Image.fromarray(c(600, 400, 21)).save(P("jpeg_exif6_600x400.jpg"), quality=90, exif=exif_bytes(6))
    Image.fromarray(c(300, 200, 22)).save(P("jpeg_exif3_300x200.jpg"), quality=90, exif=exif_bytes(3))
    Image.fromarray(c(257, 199, 23)).save(P("jpeg_exif8_257x199.jpg"), quality=90, exif=exif_bytes(8))
    # PNG colour types and depths (Pillow modes in comments).
    g = c(640, 480, 24)[:, :, 0]
    write_png(P("png_gray8_640x480.png"), g, 0, 8)  # L
    write_png(P("png_gray1_333x222.png"), (c(333, 222, 25)[:, :, 0] > 128).astype(np.uint8), 0, 1)  # 1
    write_png(P("png_gray2_100x77.png"), c(100, 77, 26)[:, :, 0] >> 6, 0, 2)  # L;2
    write_png(P("png_gray4_123x45.png"), c(123, 45, 27)[:, :, 0] >> 4, 0, 4)  # L;4
    g16 = (c(300, 200, 28)[:, :, 0].astype(np.uint16) * 3) + np.arange(200)[:, None].astype(np.uint16)
    write_png(P("png_gray16_300x200.png"), g16, 0, 16)  # I;16
    write_png(P("png_gray8_trns_200x150.png"), c(200, 150, 29)[:, :, 0], 0, 8, trns=struct.pack(">H", 255))
    alpha = np.clip(np.mgrid[0:300, 0:400][1] * 255 // 399, 0, 255).astype(np.uint8)
    write_png(P("png_la8_400x300.png"), np.stack([c(400, 300, 30)[:, :, 0], alpha], -1), 4, 8)  # LA
    la16 = np.stack([g16[:, :], (np.arange(300)[None, :] * 200).astype(np.uint16).repeat(200, 0)], -1)
    write_png(P("png_la16_300x200.png"), la16, 4, 16)  # RGBA via LA;16B
    write_png(P("png_rgb16_256x160.png"), c(256, 160, 31).astype(np.uint16) * 257 + 3, 2, 16)  # RGB
    vgrad = (np.arange(320) * 255 // 319).astype(np.uint8)[:, None, None].repeat(500, 1)
    rgba = np.concatenate([c(500, 320, 32), vgrad], -1)
    rgba[10:60, 10:60, 3] = 0
    write_png(P("png_rgba8_500x320.png"), rgba, 6, 8)  # RGBA
    write_png(P("png_rgba16_190x250.png"), np.concatenate(
        [c(190, 250, 33), np.full((250, 190, 1), 200, np.uint8)], -1).astype(np.uint16) * 257, 6, 16)
    pal = c(16, 16, 34).reshape(-1, 3)
    write_png(P("png_pal8_450x300.png"), c(450, 300, 35)[:, :, 0], 3, 8, palette=pal)  # P
    write_png(P("png_pal4_trns_211x157.png"), c(211, 157, 36)[:, :, 0] >> 4, 3, 4, palette=pal[:16],
              trns=bytes([0, 128] + [255] * 14))  # P + tRNS
    write_png(P("png_pal1_97x61.png"), c(97, 61, 37)[:, :, 1] >> 7, 3, 1, palette=pal[:2])
    write_png(P("png_rgb_trns_150x100.png"), c(150, 100, 38), 2, 8, trns=struct.pack(">HHH", 0, 0, 0))
    write_png(P("png_interlaced_rgb_333x257.png"), c(333, 257, 39), 2, 8, interlace=True)
    write_png(P("png_interlaced_gray2_67x41.png"), c(67, 41, 40)[:, :, 0] >> 6, 0, 2, interlace=True)
    write_png(P("png_interlaced_rgba_3x5.png"), np.concatenate([c(3, 5, 41), c(3, 5, 42)[:, :, :1]], -1), 6, 8,
              interlace=True)
    write_png(P("png_exif6_rgba_120x90.png"), rgba[:90, :120].copy(), 6, 8, exif=exif_bytes(6))
    make_bad()


def make_bad():
    """Broken files; tests/test_image_bad.c lists the expected errors."""
    B = lambda n: os.path.join(BAD, n)
    jpg = open(os.path.join(IMG, "jpeg_640x480_progressive.jpg"), "rb").read()
    base = open(os.path.join(IMG, "jpeg_333x251_422.jpg"), "rb").read()
    png = open(os.path.join(IMG, "rgb_14x14.png"), "rb").read()

    def w(name, data):
        with open(B(name), "wb") as f:
            f.write(data)

    w("empty.jpg", b"")
    w("text_named.jpg", b"this is a text file, not a JPEG\n")
    w("gif_named.png", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")
    w("jpeg_soi_only.jpg", b"\xff\xd8\xff")
    w("jpeg_truncated_header.jpg", base[:200])
    w("jpeg_truncated_data.jpg", base[: len(base) // 2])
    w("jpeg_progressive_truncated.jpg", jpg[: len(jpg) * 2 // 3])
    # Bad Huffman table: DHT code counts that overflow the code space.
    i = base.index(b"\xff\xc4")
    bad = bytearray(base)
    for k in range(16):
        bad[i + 5 + k] = 0xFF
    w("jpeg_bad_huffman.jpg", bytes(bad))
    # SOF with width 0 and with 65000x65000 (4.2 gigapixels: the pixel limit).
    i = base.index(b"\xff\xc0")
    z = bytearray(base)
    z[i + 7:i + 9] = b"\x00\x00"
    w("jpeg_zero_width.jpg", bytes(z))
    z = bytearray(base)
    z[i + 5:i + 9] = struct.pack(">HH", 65000, 65000)
    w("jpeg_huge.jpg", bytes(z))
    # Corrupt entropy-coded data: garbage after the first scan header.
    i = base.index(b"\xff\xda")
    z = bytearray(base)
    z[i + 20:i + 400] = bytes((k * 37) & 0xFF if (k * 37) & 0xFF != 0xFF else 0 for k in range(380))
    z[i + 400:i + 402] = b"\xff\xd9"
    w("jpeg_garbage_scan.jpg", bytes(z[: i + 402]))
    w("png_signature_only.png", png[:8])
    w("png_truncated_idat.png", png[: len(png) - 30])
    z = bytearray(png)
    z[29] ^= 0xFF  # IHDR CRC
    w("png_bad_ihdr_crc.png", bytes(z))
    z = bytearray(png)
    j = png.index(b"IDAT")
    z[j + 4 + struct.unpack(">I", png[j - 4:j])[0] + 1] ^= 0x55  # IDAT CRC
    w("png_bad_idat_crc.png", bytes(z))
    ihdr = lambda wd, ht, d=8, ct=2: _chunk(b"IHDR", struct.pack(">IIBBBBB", wd, ht, d, ct, 0, 0, 0))
    sig = b"\x89PNG\r\n\x1a\n"
    idat = _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(b"IEND", b"")
    w("png_huge_100000x100000.png", sig + ihdr(100000, 100000) + idat)
    w("png_zero_width.png", sig + ihdr(0, 10) + idat)
    w("png_bad_color_type.png", sig + ihdr(4, 4, 8, 5) + idat)
    w("png_bad_depth.png", sig + ihdr(4, 4, 7, 2) + idat)
    w("png_bad_zlib.png", sig + ihdr(4, 4) + _chunk(b"IDAT", b"\x78\x9c\xff\xff\xff\xff") + _chunk(b"IEND", b""))
    w("png_short_idat.png", sig + ihdr(40, 40) + _chunk(b"IDAT", zlib.compress(b"\x00" * 50)) + _chunk(b"IEND", b""))
    w("png_palette_missing_plte.png", sig + ihdr(4, 4, 8, 3) + idat)
    w("png_no_iend.png", png[: png.index(b"IEND") - 4])


# ---- the reference (vision.md §3, written literally) -----------------------

def select_best_resolution(size, candidates):
    W, H = size
    best, best_eff, best_waste = None, -1, float("inf")
    for cw, ch in candidates:
        scale = min(cw / W, ch / H)
        dw, dh = int(W * scale), int(H * scale)
        eff = min(dw * dh, W * H)
        waste = cw * ch - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (cw, ch), eff, waste
    return best


def keepratio_resize(image, target):
    w, h = image.size
    tw, th = target
    if w / h > tw / th:
        rw, rh = tw, int(tw * h / w)
    else:
        rw, rh = int(th * w / h), th
    resized = image.resize((rw, rh), Image.BICUBIC)
    canvas = Image.new("RGB", (tw, th), (0, 0, 0))
    canvas.paste(resized, ((tw - rw) // 2, (th - rh) // 2))
    return canvas


def reference_patches(image):
    cw, ch = select_best_resolution(image.size, PINPOINTS)
    canvas = keepratio_resize(image, (cw, ch))
    tiles = [canvas.crop((x, y, x + SIZE, y + SIZE)) for y in range(0, ch, SIZE) for x in range(0, cw, SIZE)]
    patches = [image.resize((SIZE, SIZE), Image.BICUBIC)] + tiles
    u8 = np.stack([np.asarray(p.convert("RGB")) for p in patches])
    return (cw, ch), u8


def normalize(u8):
    """torchvision ToTensor + Normalize, float32 throughout."""
    x = u8.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    mean = np.asarray(MEAN, np.float32)[None, :, None, None]
    std = np.asarray(STD, np.float32)[None, :, None, None]
    return ((x - mean) / std).astype(np.float32)


def token_count_llava(W, H):
    """Independent count: build the feature grid and unpad it like
    transformers' unpad_image, from the original (H, W)."""
    cw, ch = select_best_resolution((W, H), PINPOINTS)
    fh, fw = ch // 14, cw // 14
    if W * fh > H * fw:  # wider than the grid: crop rows
        new_h = (H * fw) // W
        pad = (fh - new_h) // 2
        rows, cols = len(range(pad, fh - pad)), fw
    else:
        new_w = (W * fh) // H
        pad = (fw - new_w) // 2
        rows, cols = fh, len(range(pad, fw - pad))
    return 576 + rows * (cols + 1)


def size_stream(n):
    """The same xorshift64 stream as tests/test_preprocess.c: sizes 1..8000."""
    s = 0x9E3779B97F4A7C15
    out = []
    for _ in range(n):
        pair = []
        for _ in range(2):
            s ^= (s << 13) & 0xFFFFFFFFFFFFFFFF
            s ^= s >> 7
            s ^= (s << 17) & 0xFFFFFFFFFFFFFFFF
            pair.append(1 + (s >> 33) % 8000)
        out.append(tuple(pair))
    return out


def decoded_pixels(im, exif=False):
    """Pixels as minimax-vl's decoder keeps them, for the decode-only check."""
    if im.mode == "P":
        return np.asarray(im.convert("RGB"))
    if im.mode == "1":
        return np.asarray(im.convert("L"))
    if im.mode == "I;16":
        return np.asarray(im).astype("<u2")
    return np.asarray(im)


def default_mode_image(im):
    """What the non-strict mode promises: EXIF applied, alpha over white."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "P") or "transparency" in im.info:
        a = np.asarray(im.convert("RGBA")).astype(np.uint32)
        rgb = (a[..., :3] * a[..., 3:] + 255 * (255 - a[..., 3:]) + 127) // 255
        return Image.fromarray(rgb.astype(np.uint8))
    return im.convert("RGB")


def crc(a):
    return zlib.crc32(np.ascontiguousarray(a).tobytes())


def make_goldens():
    entries = []
    for name in sorted(os.listdir(IMG)):
        path = os.path.join(IMG, name)
        if not os.path.isfile(path) or not name.endswith((".png", ".jpg")):
            continue
        im = Image.open(path)
        im.load()
        e = {"file": name, "pil_mode": im.mode, "width": im.size[0], "height": im.size[1]}
        e["decoded_crc"] = crc(decoded_pixels(im))
        (cw, ch), u8 = reference_patches(im)
        e.update(canvas=[cw, ch], tiles=[cw // SIZE, ch // SIZE], image_tokens=token_count_llava(*im.size),
                 tiles_u8_crc=crc(u8), tiles_f32_crc=crc(normalize(u8)))
        if "exif" in name or im.mode in ("RGBA", "LA", "P") or "transparency" in im.info:
            d = default_mode_image(im)
            (dcw, dch), du8 = reference_patches(d)
            e["default"] = {"width": d.size[0], "height": d.size[1], "canvas": [dcw, dch], "tiles_u8_crc": crc(du8)}
        entries.append(e)
        print(f"{name}: {im.mode} {im.size} canvas {cw}x{ch}", file=sys.stderr)
    lut = normalize(np.arange(256, dtype=np.uint8).reshape(1, 1, 256, 1).repeat(3, 3))[0, :, 0, :]
    sizes = size_stream(100000)
    counts = np.asarray([token_count_llava(w, h) for w, h in sizes], "<i8")
    worked = [[w, h, token_count_llava(w, h)] for w, h in
              [(336, 336), (1000, 700), (2016, 2016), (700, 1000), (1920, 1080), (640, 480), (1024, 768), (337, 336)]]
    out = {
        "generator": "scripts/make_image_goldens.py",
        "pillow": Image.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "normalize_lut_f32_hex": [[struct.pack("<f", float(v)).hex() for v in row] for row in lut],
        "token_counts": {"n": len(sizes), "crc_i64": crc(counts), "first": [[w, h, int(n)] for (w, h), n in
                                                                          zip(sizes[:20], counts[:20])]},
        "worked_examples": worked,
        "images": entries,
    }
    with open(os.path.join(IMG, "goldens.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", action="store_true", help="(re)write the test images and the bad corpus")
    ap.add_argument("--goldens", action="store_true", help="recompute goldens.json with Pillow")
    a = ap.parse_args()
    if not (a.images or a.goldens):
        ap.error("nothing to do: pass --images and/or --goldens")
    if a.images:
        make_images()
    if a.goldens:
        make_goldens()


if __name__ == "__main__":
    main()
