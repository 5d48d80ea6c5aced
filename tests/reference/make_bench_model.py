#!/usr/bin/env python3
"""Random MiniMax-VL-01 model directories of a chosen size, for benchmarks only
(not goldens). Same layout as make_tiny_model.py (released config layout,
every (i+1)%8==0 layer softmax), F32 weights.

    make_bench_model.py OUTDIR --hidden 1024 --layers 8 --experts 8 [--vocab 32000]
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model as tiny  # noqa: E402  (config layout, writer, pinpoints)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=1024)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=32000)
    a = ap.parse_args()
    H, L, E, I, D, V = a.hidden, a.layers, a.experts, a.intermediate, a.head_dim, a.vocab
    NH, KV = H // D, max(1, H // D // 4)
    rng = np.random.default_rng(1)
    items = {k: v for k, v in tiny.tensors(V, rng).items() if not k.startswith("language_model.")
             and not k.startswith("multi_modal_projector.") and k != "image_newline"}
    VH = 64

    def w(name, *shape, std=0.02):
        items[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    w("multi_modal_projector.linear_1.weight", H, VH)
    w("multi_modal_projector.linear_1.bias", H)
    w("multi_modal_projector.linear_2.weight", H, H)
    w("multi_modal_projector.linear_2.bias", H)
    w("image_newline", H)
    tp = "language_model.model."
    w(tp + "embed_tokens.weight", V, H, std=1.0)
    for l in range(L):
        p = f"{tp}layers.{l}."
        items[p + "input_layernorm.weight"] = np.ones(H, np.float32)
        items[p + "post_attention_layernorm.weight"] = np.ones(H, np.float32)
        if (l + 1) % 8 == 0:
            w(p + "self_attn.q_proj.weight", NH * D, H)
            w(p + "self_attn.k_proj.weight", KV * D, H)
            w(p + "self_attn.v_proj.weight", KV * D, H)
            w(p + "self_attn.o_proj.weight", H, NH * D)
        else:
            w(p + "self_attn.qkv_proj.weight", 3 * NH * D, H)
            w(p + "self_attn.output_gate.weight", NH * D, H)
            items[p + "self_attn.norm.weight"] = np.ones(NH * D, np.float32)
            w(p + "self_attn.out_proj.weight", H, NH * D)
        w(p + "block_sparse_moe.gate.weight", E, H)
        for e in range(E):
            q = f"{p}block_sparse_moe.experts.{e}."
            w(q + "w1.weight", I, H)
            w(q + "w3.weight", I, H)
            w(q + "w2.weight", H, I)
    items[tp + "norm.weight"] = np.ones(H, np.float32)
    w("language_model.lm_head.weight", V, H)
    cfg = tiny.config(V)
    t = cfg["text_config"]
    t.update({"hidden_size": H, "num_hidden_layers": L, "attn_type_list": [int((i + 1) % 8 == 0) for i in range(L)],
              "num_attention_heads": NH, "num_key_value_heads": KV, "head_dim": D, "rotary_dim": D // 2,
              "num_local_experts": E, "intermediate_size": I})
    for k in ("full_attention", "linear_attention", "mlp"):
        t[f"layernorm_{k}_alpha"] = (2 * L) ** 0.25
    os.makedirs(a.out, exist_ok=True)
    tiny.write_safetensors(os.path.join(a.out, "model.safetensors"), items, "F32")
    json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
    print(f"{sum(x.size for x in items.values()) / 1e6:.1f} M parameters -> {a.out}")


if __name__ == "__main__":
    main()
