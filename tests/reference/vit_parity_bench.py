#!/usr/bin/env python3
"""Full-size parity and benchmark of the CUDA vision path against transformers.

Builds seeded random bf16 weights for the 303.5M CLIP ViT (vision.md §1), the
projector and image_newline (§2), writes them as a model directory in the
released naming (vision_tower.vision_model.*, multi_modal_projector.*,
image_newline; config.json with the full vision part and a stub text part),
then on the same GPU:
  1. parity: bench_vit_cuda's final hidden state against transformers
     CLIPVisionModel (bf16, SDPA) on the same bf16-rounded pixels, plus both
     against the fp32 model; the packed embeddings of one image against
     torch's projector + the §4.1 packing written here from the spec;
  2. speed: the ViT at 1, 8, 19, 64 tiles (ours, CLIPVisionModel SDPA eager,
     and under torch.compile), our time per stage, the GEMM ceiling (ours and
     torch.matmul), and one 2016x1008 JPEG end to end.
--ref-backends also runs the reference under each SDPA backend against its
default one (how far transformers' own bf16 attention implementations lie
apart); --torch-profile N prints the eager model's per-kernel time.
Needs torch, transformers, numpy, Pillow (the GPU machine has them).

Usage: vit_parity_bench.py --bin build/tests/bench_vit_cuda --work /tmp/vitbench --out OUTDIR
       vit_parity_bench.py --write-only --work DIR   (model directory only, numpy only)
       vit_parity_bench.py --init hf --parity-only ...  (transformers' own random initialisation; parity only)
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cuda_timing import median_ms  # noqa: E402
from make_tiny_model import PINPOINTS, config as tiny_config, write_safetensors  # noqa: E402

V, L, NH, I, S, P, D = 1024, 24, 16, 4096, 336, 14, 6144
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
G = S // P


def bf16_round(a):
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


def vision_tensors(rng):
    """HF CLIPVisionModel state-dict names (without the vision_tower. prefix) -> float32 values."""
    out = {}

    def w(name, *shape, std):
        out[name] = rng.standard_normal(size=shape, dtype=np.float32) * np.float32(std)

    def norm(name):
        out[name + ".weight"] = 1.0 + rng.standard_normal(V, dtype=np.float32) * np.float32(0.1)
        out[name + ".bias"] = rng.standard_normal(V, dtype=np.float32) * np.float32(0.05)

    vp = "vision_model."
    w(vp + "embeddings.class_embedding", V, std=0.5)
    w(vp + "embeddings.patch_embedding.weight", V, 3, P, P, std=0.03)
    w(vp + "embeddings.position_embedding.weight", G * G + 1, V, std=0.1)
    norm(vp + "pre_layrnorm")
    for l in range(L):
        p = f"{vp}encoder.layers.{l}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w(p + f"self_attn.{proj}.weight", V, V, std=0.03)
            w(p + f"self_attn.{proj}.bias", V, std=0.02)
        norm(p + "layer_norm1")
        norm(p + "layer_norm2")
        w(p + "mlp.fc1.weight", I, V, std=0.03)
        w(p + "mlp.fc1.bias", I, std=0.02)
        w(p + "mlp.fc2.weight", V, I, std=0.015)
        w(p + "mlp.fc2.bias", V, std=0.02)
    return out


def clip_config():
    from transformers import CLIPVisionConfig
    return CLIPVisionConfig(hidden_size=V, intermediate_size=I, num_hidden_layers=L, num_attention_heads=NH,
                            image_size=S, patch_size=P, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=D)


def hf_model(sd, dtype, attn, dev):
    """transformers' CLIPVisionModel with the tensors sd (vision_model.* names -> torch tensors), on dev."""
    from transformers import CLIPVisionConfig, CLIPVisionModel
    c = CLIPVisionConfig.from_dict(clip_config().to_dict())
    c._attn_implementation = attn
    m = CLIPVisionModel(c)
    keys = set(m.state_dict())
    # transformers 4.x names the tower's tensors vision_model.*, 5.x drops the prefix
    msd = sd if any(k.startswith("vision_model.") for k in keys) else {
        k[len("vision_model."):]: v for k, v in sd.items()}
    missing, unexpected = m.load_state_dict(msd, strict=False)
    assert not unexpected and all("post_layernorm" in k or "position_ids" in k for k in missing), (
        missing[:5], unexpected[:5])
    return m.to(dev, dtype).eval()


def vision_tensors_hf(seed):
    """The same names, valued as transformers' own CLIPVisionModel initialisation leaves them (seeded)."""
    import torch
    from transformers import CLIPVisionModel
    torch.manual_seed(seed)
    sd = CLIPVisionModel(clip_config()).state_dict()
    out = {}
    for k, t in sd.items():
        if "post_layernorm" in k or "position_ids" in k:
            continue
        name = k if k.startswith("vision_model.") else "vision_model." + k
        out[name] = t.float().numpy()
    return out


def other_tensors(rng):
    return {
        "multi_modal_projector.linear_1.weight": rng.standard_normal((D, V), dtype=np.float32) * np.float32(0.03),
        "multi_modal_projector.linear_1.bias": rng.standard_normal(D, dtype=np.float32) * np.float32(0.02),
        "multi_modal_projector.linear_2.weight": rng.standard_normal((D, D), dtype=np.float32) * np.float32(0.013),
        "multi_modal_projector.linear_2.bias": rng.standard_normal(D, dtype=np.float32) * np.float32(0.02),
        "image_newline": rng.standard_normal(D, dtype=np.float32),
    }


def write_model(work, init="script"):
    d = os.path.join(work, "model")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(20261122)
    # "script": the scales above (LayerNorm gains 1 +- 0.1, biases everywhere);
    # "hf": transformers' own initialisation (unit gains, zero biases, smaller
    # attention weights), the projector unchanged.
    vis = vision_tensors(rng) if init == "script" else vision_tensors_hf(20261122)
    vis = {k: bf16_round(v) for k, v in vis.items()}
    oth = {k: bf16_round(v) for k, v in other_tensors(rng).items()}
    items = {"vision_tower." + k: v for k, v in vis.items()}
    items.update(oth)
    write_safetensors(os.path.join(d, "model.safetensors"), items, "BF16")
    cfg = tiny_config(1536)
    cfg["text_config"].update({"hidden_size": D, "head_dim": 128, "num_attention_heads": 48, "num_key_value_heads": 8})
    cfg["vision_config"] = {
        "model_type": "clip_vision_model", "hidden_act": "gelu", "hidden_size": V, "image_size": S,
        "intermediate_size": I, "layer_norm_eps": 1e-5, "num_attention_heads": NH, "num_channels": 3,
        "num_hidden_layers": L, "patch_size": P, "projection_dim": D,
    }
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
    json.dump({"process_image_mode": "anyres", "size": [S, S], "patch_size": P, "image_grid_pinpoints": PINPOINTS,
               "image_mean": MEAN, "image_std": STD}, open(os.path.join(d, "preprocessor_config.json"), "w"))
    return d, vis, oth


def pixels_from_u8(torch, u8):
    """uint8 [n, S, S, 3] -> the reference's pixel_values: (x/255 - mean)/std in fp32, then bf16 (§3.5)."""
    x = torch.from_numpy(u8).float().div(255.0).permute(0, 3, 1, 2)
    m = torch.tensor(MEAN).view(1, 3, 1, 1)
    s = torch.tensor(STD).view(1, 3, 1, 1)
    return x.sub(m).div(s).to(torch.bfloat16)


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def pack_reference(torch, feats, w, h, cols, rows):
    """§4.1 steps 3-7 on projected features [1+R*C, 576, D] (torch)."""
    base = feats[0]
    g = feats[1:].view(rows, cols, G, G, -1).permute(4, 0, 2, 1, 3).flatten(1, 2).flatten(2, 3)  # [D, FH, FW]
    fh, fw = G * rows, G * cols
    if w * fh > h * fw:
        nh = h * fw // w
        p = (fh - nh) // 2
        g = g[:, p:fh - p, :]
    else:
        nw = w * fh // h
        p = (fw - nw) // 2
        g = g[:, :, p:fw - p]
    return g, base


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin")
    ap.add_argument("--work", default="/tmp/vitbench")
    ap.add_argument("--out", default=".")
    ap.add_argument("--write-only", action="store_true")
    ap.add_argument("--init", choices=("script", "hf"), default="script",
                    help="random weights at this script's scales, or as transformers initialises CLIPVisionModel")
    ap.add_argument("--batches", default="1,8,19,64")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--parity-only", action="store_true", help="the parity part only (no packing, no speed)")
    ap.add_argument("--skip-packing", action="store_true")
    ap.add_argument("--ref-backends", action="store_true",
                    help="also the reference under each SDPA backend against its default (the reference's own spread)")
    ap.add_argument("--torch-profile", type=int, default=0, help="TILES: per-kernel CUDA time of the eager model")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    t0 = time.time()
    mdir, vis, oth = write_model(a.work, a.init)
    print(f"model dir {mdir} written in {time.time() - t0:.1f} s", flush=True)
    if a.write_only:
        return

    import torch

    report = {"init": a.init}
    dev = "cuda"
    sd = {k: torch.from_numpy(v) for k, v in vis.items()}

    def make(dtype, attn):
        return hf_model(sd, dtype, attn, dev)

    # ---- parity ------------------------------------------------------------------
    rng = np.random.default_rng(7)
    n = 8
    u8 = rng.integers(0, 256, size=(n, S, S, 3), dtype=np.uint8)
    tiles_path = os.path.join(a.work, "tiles.u8")
    u8.tofile(tiles_path)
    ours_path = os.path.join(a.work, "ours_hidden.npy")
    subprocess.run([a.bin, "hidden", mdir, tiles_path, str(n), ours_path], check=True)
    ours = torch.from_numpy(np.load(ours_path))
    pix = pixels_from_u8(torch, u8).to(dev)
    with torch.inference_mode():
        m16 = make(torch.bfloat16, "sdpa")
        print("attention implementation:", m16.config._attn_implementation, flush=True)
        ref16 = m16(pixel_values=pix).last_hidden_state.float().cpu()
        m32 = make(torch.float32, "sdpa")
        ref32 = m32(pixel_values=pix.float()).last_hidden_state.float().cpu()
        del m32
        if a.ref_backends:
            from torch.nn.attention import sdpa_kernel, SDPBackend
            for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
                with sdpa_kernel(getattr(SDPBackend, name)):
                    rb = m16(pixel_values=pix).last_hidden_state.float().cpu()
                report["ref_backend_" + name] = {"vs_default_bf16": rel(rb, ref16), "vs_fp32": rel(rb, ref32)}
                print("reference backend", name, json.dumps(report["ref_backend_" + name]), flush=True)
    report["parity"] = {
        "tiles": n,
        "ours_vs_hf_bf16": rel(ours, ref16),
        "ours_vs_hf_fp32": rel(ours, ref32),
        "hf_bf16_vs_hf_fp32": rel(ref16, ref32),
        "ours_vs_hf_bf16_features_only": rel(ours[:, 1:], ref16[:, 1:]),
        "finite": bool(torch.isfinite(ours).all()),
    }
    print(json.dumps(report["parity"]), flush=True)
    if a.parity_only:
        json.dump(report, open(os.path.join(a.out, "vit_parity_%s.json" % a.init), "w"), indent=2)
        return
    if a.skip_packing:
        report["packing"] = {}

    # projector + packing, one 1000x700 image: 1008x1008 canvas, 3x3 tiles (§4.3)
    W_, H_, C_, R_ = 1000, 700, 3, 3
    if not a.skip_packing:
        packing(a, torch, rng, mdir, m16, oth, tiles_path, dev, report, W_, H_, C_, R_)

    # ---- speed ----------------------------------------------------------------------
    batches = [int(b) for b in a.batches.split(",")]
    r = subprocess.run([a.bin, "bench", mdir] + [str(b) for b in batches], check=True, capture_output=True, text=True)
    print(r.stdout, flush=True)
    bench_rest(a, torch, rng, mdir, m16, dev, report, batches, r.stdout)


def packing(a, torch, rng, mdir, m16, oth, tiles_path, dev, report, W_, H_, C_, R_):
    nt = 1 + C_ * R_
    u8b = rng.integers(0, 256, size=(nt, S, S, 3), dtype=np.uint8)
    u8b.tofile(tiles_path)
    packed_path = os.path.join(a.work, "ours_packed.npy")
    subprocess.run([a.bin, "encode", mdir, tiles_path, str(W_), str(H_), str(C_), str(R_), packed_path], check=True)
    ours_p = torch.from_numpy(np.load(packed_path))
    with torch.inference_mode():
        f = m16(pixel_values=pixels_from_u8(torch, u8b).to(dev)).last_hidden_state[:, 1:]
        t = {k: torch.from_numpy(v).to(dev, torch.bfloat16) for k, v in oth.items()}
        x = torch.nn.functional.linear(f, t["multi_modal_projector.linear_1.weight"],
                                       t["multi_modal_projector.linear_1.bias"])
        x = torch.nn.functional.gelu(x)
        x = torch.nn.functional.linear(x, t["multi_modal_projector.linear_2.weight"],
                                       t["multi_modal_projector.linear_2.bias"])
        grid, base = pack_reference(torch, x, W_, H_, C_, R_)
        nl = t["image_newline"].view(-1, 1, 1).expand(-1, grid.shape[1], 1)
        grid = torch.cat([grid, nl], dim=2).flatten(1, 2).transpose(0, 1)
        ref_p = torch.cat([base, grid], 0).float().cpu()
    report["packing"] = {"tokens_ours": int(ours_p.shape[0]), "tokens_ref": int(ref_p.shape[0]),
                         "expected_tokens": 4226}
    if ours_p.shape == ref_p.shape:
        report["packing"]["rel_err"] = rel(ours_p, ref_p)
        nlmask = torch.zeros(ref_p.shape[0], dtype=torch.bool)
        nlmask[576 + 72::73] = True
        report["packing"]["newline_rows_exact"] = bool((ours_p[nlmask] == ref_p[nlmask]).all())
    print(json.dumps(report["packing"]), flush=True)


def bench_rest(a, torch, rng, mdir, m16, dev, report, batches, stdout):
    ours_t = {}
    for line in stdout.splitlines():
        if line.startswith("vit "):
            kv = dict(x.split("=") for x in line.split()[1:])
            ours_t[int(kv["tiles"])] = float(kv["ms"])
        elif line.startswith("gemm_ceiling"):
            report["gemm_ceiling_ours_tflops"] = float(line.split("tflops=")[1])
        elif line.startswith("device:"):
            report["device"] = line.split(": ", 1)[1]
        elif line.startswith("stage "):  # tiles=N name=S calls=C ms=T share=P% [tflops=F] [gb_s=B]
            kv = dict(x.split("=") for x in line.split()[1:])
            report.setdefault("stages", []).append(kv)

    with torch.inference_mode():
        A = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
        B = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
        ms = median_ms(lambda: A @ B, reps=20)
        report["gemm_ceiling_torch_tflops"] = 2 * 8192 ** 3 / (ms * 1e-3) / 1e12
        del A, B
    g2 = G * G
    flops_tile = 2.0 * g2 * 3 * P * P * V + L * (2.0 * (g2 + 1) * (4 * V * V + 2 * V * I) + 4.0 * (g2 + 1) ** 2 * V)
    rows = []
    torch.manual_seed(0)
    with torch.inference_mode():
        for b in batches:
            x = torch.randn(b, 3, S, S, device=dev).to(torch.bfloat16)
            eager = median_ms(lambda: m16(pixel_values=x))
            rows.append({"tiles": b, "ours_ms": ours_t.get(b), "eager_ms": eager})
            print(rows[-1], flush=True)
        if a.torch_profile:
            x = torch.randn(a.torch_profile, 3, S, S, device=dev).to(torch.bfloat16)
            m16(pixel_values=x)
            torch.cuda.synchronize()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                m16(pixel_values=x)
                torch.cuda.synchronize()
            print(f"eager transformers, {a.torch_profile} tiles, per-kernel CUDA time:")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=90))
    if not a.no_compile:
        mc = torch.compile(m16)
        with torch.inference_mode():
            for row in rows:
                b = row["tiles"]
                x = torch.randn(b, 3, S, S, device=dev).to(torch.bfloat16)
                tc = time.time()
                mc(pixel_values=x)
                torch.cuda.synchronize()
                row["compile_s"] = time.time() - tc
                row["compiled_ms"] = median_ms(lambda: mc(pixel_values=x))
                print(row, flush=True)
    for row in rows:
        b = row["tiles"]
        for k in ("ours", "eager", "compiled"):
            if row.get(k + "_ms"):
                row[k + "_tiles_s"] = b / row[k + "_ms"] * 1e3
                row[k + "_tflops"] = flops_tile * b / (row[k + "_ms"] * 1e-3) / 1e12
    report["vit"] = rows
    report["flops_per_tile"] = flops_tile

    # ---- one 2016x1008 JPEG end to end -------------------------------------------------
    if a.skip_e2e:
        report["e2e"] = {}
        write_report(a, report, rows)
        return
    from PIL import Image
    yy, xx = np.mgrid[0:1008, 0:2016]
    img = np.stack([(xx * 255 // 2015), (yy * 255 // 1007), ((xx + yy) % 256)], -1).astype(np.uint8)
    img = np.clip(img.astype(np.int16) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    jpg = os.path.join(a.work, "wide.jpg")
    Image.fromarray(img).save(jpg, quality=90)
    r = subprocess.run([a.bin, "e2e", mdir, jpg, "20"], capture_output=True, text=True)
    print(r.stdout, r.stderr, flush=True)
    report["e2e"] = {"error": r.stderr} if r.returncode else {}
    for line in r.stdout.splitlines() if r.returncode == 0 else []:  # one line per path, then the tile check
        kv = dict(x.split("=", 1) for x in line.split()[1:])
        report["e2e"][kv.get("path", "check")] = kv
    write_report(a, report, rows)


def write_report(a, report, rows):
    json.dump(report, open(os.path.join(a.out, "vit_bench.json"), "w"), indent=2)
    lines = [f"device: {report.get('device')}", "",
             "| tiles | ours ms | ours tiles/s | ours TFLOP/s | eager ms | compile ms | vs eager | vs compile |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append("| %d | %.2f | %.1f | %.0f | %.2f | %s | %.2fx | %s |" % (
            row["tiles"], row["ours_ms"], row["ours_tiles_s"], row["ours_tflops"], row["eager_ms"],
            "%.2f" % row["compiled_ms"] if row.get("compiled_ms") else "-",
            row["eager_ms"] / row["ours_ms"],
            "%.2fx" % (row["compiled_ms"] / row["ours_ms"]) if row.get("compiled_ms") else "-"))
    lines.append("")
    lines.append("GEMM ceiling (8192^3 bf16): ours cuBLASLt %.0f TFLOP/s, torch.matmul %.0f TFLOP/s" % (
        report.get("gemm_ceiling_ours_tflops", 0), report["gemm_ceiling_torch_tflops"]))
    if report.get("stages"):
        lines += ["", "ours per stage (device events after every launch; bench_vit_cuda bench):", "",
                  "| tiles | stage | launches | ms | share | TFLOP/s | GB/s |", "|---|---|---|---|---|---|---|"]
        for st in report["stages"]:
            lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                st["tiles"], st["name"], st.get("calls", ""), st["ms"], st.get("share", ""), st.get("tflops", "-"),
                st.get("gb_s", "-")))
    for k, val in report.items():
        if k.startswith("ref_backend_"):
            lines.append("reference under SDPA backend %s: %s" % (k[len("ref_backend_"):], json.dumps(val)))
    lines.append("parity (weights: %s): %s" % (report["init"], json.dumps(report["parity"])))
    lines.append("packing: " + json.dumps(report["packing"]))
    lines.append("e2e: " + json.dumps(report["e2e"]))
    open(os.path.join(a.out, "vit_bench.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
