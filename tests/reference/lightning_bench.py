#!/usr/bin/env python3
"""Lightning attention: our CUDA kernels next to transformers on the same GPU.

Runs tests' bench_lightning_cuda (our prefill of one 32k-token sequence and our
decode step at batch 1, 8, 32; 64 heads, d 128: decoder.md §4) and times
transformers' MiniMaxLightningAttention (transformers.models.minimax) at full
width (hidden 6144, 64 heads, head_dim 128, bf16, CUDA) in the same run:
  (a) its whole forward on the same tokens (qkv/gate/out projections, SiLU,
      the block loop of §4.4 or the decode recurrence, RMSNorm, gate),
  (b) the same three projections alone (torch Linear calls, same shapes),
  (c) = (a) - (b): its attention part, compared with our kernel time.
Its decode step runs with a MiniMaxCache holding the layer's state (bf16,
as the module keeps it). CUDA events, median of several runs.

Usage: lightning_bench.py --bin build/tests/bench_lightning_cuda --out OUTDIR [--tokens 32768]
"""
import argparse
import json
import os
import subprocess
import sys

from cuda_timing import median_ms

HIDDEN, HEADS, HEAD_DIM = 6144, 64, 128


def ours(binary, tokens, w):
    env = dict(os.environ)
    if w:
        env["MVL_LIGHTNING_W"] = str(w)
    p = subprocess.run([binary, str(tokens)], env=env, capture_output=True, text=True)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        raise SystemExit(f"{binary} exited {p.returncode}")
    line = [x for x in p.stdout.splitlines() if x.startswith("json: ")][-1]
    return json.loads(line[len("json: "):])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", default=".")
    ap.add_argument("--tokens", type=int, default=32768)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    runs = {w or "default": ours(a.bin, a.tokens, w) for w in (None, 32, 64)}
    mine = runs["default"]
    with open(os.path.join(a.out, "lightning_ours.json"), "w") as f:
        json.dump(runs, f, indent=1)

    import torch
    import transformers
    from transformers import MiniMaxConfig
    from transformers.models.minimax import modeling_minimax as mm

    torch.manual_seed(0)
    dev = "cuda"
    cfg = MiniMaxConfig(hidden_size=HIDDEN, num_attention_heads=HEADS, head_dim=HEAD_DIM, num_hidden_layers=80,
                        num_key_value_heads=8, intermediate_size=9216, num_local_experts=32, block_size=256,
                        hidden_act="silu", vocab_size=1024)
    layer_idx = 40
    with torch.device(dev):
        layer = mm.MiniMaxLightningAttention(cfg, layer_idx)
    layer = layer.to(dev, torch.bfloat16).eval()
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("norm"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)

    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "transformers": transformers.__version__, "ours": runs}
    T = a.tokens
    with torch.no_grad():
        # ---- prefill: one sequence of T tokens ----
        x = torch.randn(1, T, HIDDEN, device=dev, dtype=torch.bfloat16)
        y_in = torch.randn(1, T, HEADS * HEAD_DIM, device=dev, dtype=torch.bfloat16)
        whole = median_ms(lambda: layer(hidden_states=x, position_embeddings=None, attention_mask=None),
                          warm=1, reps=5)
        proj = median_ms(lambda: (layer.qkv_proj(x), layer.output_gate(x), layer.out_proj(y_in)), warm=1, reps=5)
        report["prefill"] = {"tokens": T, "hf_whole_ms": whole, "hf_proj_ms": proj, "hf_attn_ms": whole - proj,
                             "ours_ms": mine["prefill_ms"], "ratio": (whole - proj) / mine["prefill_ms"]}
        del x, y_in
        torch.cuda.empty_cache()

        # ---- decode: one token per sequence, state in a MiniMaxCache ----
        report["decode"] = {}
        for B in (1, 8, 32):
            x1 = torch.randn(B, 1, HIDDEN, device=dev, dtype=torch.bfloat16)
            y1 = torch.randn(B, 1, HEADS * HEAD_DIM, device=dev, dtype=torch.bfloat16)
            state = torch.randn(B, HEADS, HEAD_DIM, HEAD_DIM, device=dev, dtype=torch.bfloat16)
            try:
                cache = mm.MiniMaxCache()
            except TypeError:  # Cache classes that take the config
                cache = mm.MiniMaxCache(config=cfg)

            def step():
                cache.set_linear_cache(layer_idx, state)
                return layer(hidden_states=x1, position_embeddings=None, attention_mask=None, past_key_values=cache)

            out, new_state = step()
            assert new_state.shape == state.shape, new_state.shape  # it took the decode path
            whole = median_ms(step, warm=3, reps=20)
            proj = median_ms(lambda: (layer.qkv_proj(x1), layer.output_gate(x1), layer.out_proj(y1)), warm=3, reps=20)
            o = mine["decode_ms"][str(B)]
            report["decode"][str(B)] = {"hf_whole_ms": whole, "hf_proj_ms": proj, "hf_attn_ms": whole - proj,
                                        "ours_ms": o, "ratio": (whole - proj) / o}

    p = report["prefill"]
    lines = [f"device: {report['device']}; torch {report['torch']}, transformers {report['transformers']}",
             "",
             "| step | transformers whole (a) ms | its projections (b) ms | (c) = a - b ms | ours ms | (c) / ours |",
             "|---|---|---|---|---|---|",
             f"| prefill {T} tokens | {p['hf_whole_ms']:.2f} | {p['hf_proj_ms']:.2f} | {p['hf_attn_ms']:.2f} | "
             f"{p['ours_ms']:.3f} | {p['ratio']:.1f}x |"]
    for B, r in report["decode"].items():
        lines.append(f"| decode batch {B} | {r['hf_whole_ms']:.3f} | {r['hf_proj_ms']:.3f} | {r['hf_attn_ms']:.3f} | "
                     f"{r['ours_ms']:.4f} | {r['ratio']:.1f}x |")
    lines += ["", "ours by prefill v-slice width: " + ", ".join(
        f"{k}: {v['prefill_ms']:.3f} ms" for k, v in runs.items())]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(a.out, "lightning_bench.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, "lightning_bench.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
