#!/usr/bin/env python3
"""The decoder's CUDA softmax attention next to torch on the same GPU.

Runs tests/bench_attention_cuda (full dims: 64 query heads, 8 kv heads, d 128),
then torch.nn.functional.scaled_dot_product_attention with the flash backend
(bf16, GQA through enable_gqa=True, or K/V expanded to 64 heads where the
backend refuses it) on the same shapes and memory layouts ([tokens, heads, d]
viewed as [B, heads, tokens, d]):
  prefill: one causal N-token sequence; TFLOP/s from 2*2*heads*d*N^2/2;
  decode:  one query token per sequence over CTX cached positions (no mask:
           the query is the last position), batch 1, 8, 32; GB/s of K/V read.
Prints a markdown table with ratio = torch time / our time (> 1: ours faster).

Usage: attention_bench.py --bin build/bench_attention_cuda [--n 32768] [--ctx 32768] [--out FILE]
"""
import argparse
import subprocess
import sys

from cuda_timing import median_ms

H, KV, D = 64, 8, 128


def parse(text):
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("prefill", "decode"):
            continue
        kv = dict(p.split("=", 1) for p in parts[1:])
        kv["kind"] = parts[0]
        rows.append(kv)
    return rows


def sdpa(q, k, v, causal):
    """Flash-backend SDPA with GQA; returns (fn, how)."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def gqa():
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)

    try:
        gqa()
        return gqa, "flash, enable_gqa"
    except RuntimeError:
        ke = k.repeat_interleave(H // KV, dim=1)
        ve = v.repeat_interleave(H // KV, dim=1)

        def expanded():
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                return F.scaled_dot_product_attention(q, ke, ve, is_causal=causal)

        expanded()
        torch.cuda.synchronize()
        return expanded, "flash, K/V expanded"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--n", type=int, default=32768)
    ap.add_argument("--ctx", type=int, default=32768)
    ap.add_argument("--out")
    a = ap.parse_args()

    res = subprocess.run([a.bin, str(a.n), str(a.ctx)], capture_output=True, text=True)
    sys.stderr.write(res.stderr)
    print(res.stdout, end="")
    if res.returncode != 0:
        sys.exit(f"{a.bin} failed with status {res.returncode}")
    ours = parse(res.stdout)

    import torch
    dev = torch.device("cuda")
    torch.manual_seed(0)
    lines = [f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", "",
             "| case | ours ms | torch ms | ours | torch | ratio (torch/ours) | torch path |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in ours:
        if r["kind"] == "prefill":
            n = int(r["N"])
            q = torch.randn(1, n, H, D, device=dev, dtype=torch.bfloat16).transpose(1, 2)
            k = torch.randn(1, n, KV, D, device=dev, dtype=torch.bfloat16).transpose(1, 2)
            v = torch.randn(1, n, KV, D, device=dev, dtype=torch.bfloat16).transpose(1, 2)
            fn, how = sdpa(q, k, v, True)
            t = median_ms(fn, 5)
            flops = 4.0 * H * D * n * n / 2
            ms = float(r["attn_ms"])
            lines.append(f"| prefill N={n} | {ms:.3f} | {t:.3f} | {flops / ms / 1e9:.0f} TFLOP/s | "
                         f"{flops / t / 1e9:.0f} TFLOP/s | {t / ms:.2f} | {how} |")
            del q, k, v, fn
        else:
            b, ctx = int(r["B"]), int(r["ctx"])
            q = torch.randn(b, 1, H, D, device=dev, dtype=torch.bfloat16).transpose(1, 2)
            k = torch.randn(b, ctx, KV, D, device=dev, dtype=torch.bfloat16).transpose(1, 2)
            v = torch.randn(b, ctx, KV, D, device=dev, dtype=torch.bfloat16).transpose(1, 2)
            fn, how = sdpa(q, k, v, False)
            t = median_ms(fn, 5, inner=20)
            gb = b * ctx * KV * D * 2 * 2 / 1e9
            for label, key in (("stream", "attn_ms"), ("graph", "graph_ms")):
                ms = float(r[key])
                lines.append(f"| decode B={b} ctx={ctx} ({label}) | {ms:.4f} | {t:.4f} | {gb / ms * 1e3:.0f} GB/s | "
                             f"{gb / t * 1e3:.0f} GB/s | {t / ms:.2f} | {how} |")
            del q, k, v, fn
        torch.cuda.empty_cache()
    table = "\n".join(lines) + "\n"
    print(table)
    if a.out:
        with open(a.out, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
