#!/usr/bin/env python3
"""Writes the tiny random MiniMax-VL-01 test models as Hugging Face directories.

Same architecture and tensor names as the released checkpoint (vision.md §6,
decoder.md §2), config.json in the released remote-code layout, 336 px tiles
and 14 px patches so the anyres grid logic is real, but small widths:
vision hidden 64 x 2 layers; text hidden 128 x 8 layers (layer 7 softmax, the
rest lightning), 4 heads of 32 with rotary_dim 16, 2 KV heads, 4 experts top-2.

Two directories with the same weights: OUT/tiny-random (F32) and
OUT/tiny-random-bf16 (the F32 values rounded to nearest-even BF16).
Seeded, so reruns give identical bytes. Needs numpy only.

Usage: make_tiny_model.py OUTDIR [--vocab N] [--tokenizer DIR]
--tokenizer copies tokenizer.json / tokenizer_config.json from DIR into both
models and takes the vocabulary size from it.
"""
import argparse
import json
import os
import shutil

import numpy as np

PINPOINTS = [[a * 336, b * 336] for a in range(1, 7) for b in range(1, 7) if a * b <= 18]
ALPHA = (2 * 8) ** 0.25  # DeepNorm alpha for 8 layers, as the released (2L)^(1/4) (decoder.md §1.1)


def tensors(vocab, rng):
    V, VL, VH, VI = 64, 2, 4, 128
    H, L, NH, D, KV, E, I = 128, 8, 4, 32, 2, 4, 32
    out = {}

    def w(name, *shape, std=0.02):
        out[name] = rng.normal(0.0, std, size=shape).astype(np.float32)

    def norm(name, n):
        out[name] = (1.0 + rng.normal(0.0, 0.1, size=n)).astype(np.float32)

    vp = "vision_tower.vision_model."
    w(vp + "embeddings.class_embedding", V, std=0.5)
    w(vp + "embeddings.patch_embedding.weight", V, 3, 14, 14, std=0.05)
    w(vp + "embeddings.position_embedding.weight", 577, V, std=0.1)
    norm(vp + "pre_layrnorm.weight", V)
    w(vp + "pre_layrnorm.bias", V, std=0.05)
    for l in range(VL):
        p = f"{vp}encoder.layers.{l}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w(p + f"self_attn.{proj}.weight", V, V, std=0.15)
            w(p + f"self_attn.{proj}.bias", V, std=0.05)
        for ln in ("layer_norm1", "layer_norm2"):
            norm(p + f"{ln}.weight", V)
            w(p + f"{ln}.bias", V, std=0.05)
        w(p + "mlp.fc1.weight", VI, V, std=0.15)
        w(p + "mlp.fc1.bias", VI, std=0.05)
        w(p + "mlp.fc2.weight", V, VI, std=0.1)
        w(p + "mlp.fc2.bias", V, std=0.05)
    w("multi_modal_projector.linear_1.weight", H, V, std=0.15)
    w("multi_modal_projector.linear_1.bias", H, std=0.05)
    w("multi_modal_projector.linear_2.weight", H, H, std=0.1)
    w("multi_modal_projector.linear_2.bias", H, std=0.05)
    w("image_newline", H, std=1.0)
    tp = "language_model.model."
    w(tp + "embed_tokens.weight", vocab, H, std=1.0)
    for l in range(L):
        p = f"{tp}layers.{l}."
        norm(p + "input_layernorm.weight", H)
        norm(p + "post_attention_layernorm.weight", H)
        if (l + 1) % 8 == 0:
            w(p + "self_attn.q_proj.weight", NH * D, H, std=0.1)
            w(p + "self_attn.k_proj.weight", KV * D, H, std=0.1)
            w(p + "self_attn.v_proj.weight", KV * D, H, std=0.1)
            w(p + "self_attn.o_proj.weight", H, NH * D, std=0.1)
        else:
            w(p + "self_attn.qkv_proj.weight", 3 * NH * D, H, std=0.1)
            w(p + "self_attn.output_gate.weight", NH * D, H, std=0.1)
            norm(p + "self_attn.norm.weight", NH * D)
            w(p + "self_attn.out_proj.weight", H, NH * D, std=0.1)
        w(p + "block_sparse_moe.gate.weight", E, H, std=0.3)
        for e in range(E):
            q = f"{p}block_sparse_moe.experts.{e}."
            w(q + "w1.weight", I, H, std=0.1)
            w(q + "w3.weight", I, H, std=0.1)
            w(q + "w2.weight", H, I, std=0.1)
    norm(tp + "norm.weight", H)
    w("language_model.lm_head.weight", vocab, H, std=0.1)
    return out


def to_bf16_bits(a):
    """float32 -> bfloat16 bit patterns, round to nearest even (no NaNs here)."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path, items, dtype):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in items.items():
        b = (to_bf16_bits(a) if dtype == "BF16" else a.astype("<f4")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h)
        for b in blobs:
            f.write(b)


def config(vocab):
    text = {
        "model_type": "minimax_text_01", "architectures": ["MiniMaxText01ForCausalLM"],
        "attn_type_list": [int((i + 1) % 8 == 0) for i in range(8)],
        "head_dim": 32, "hidden_size": 128, "intermediate_size": 32,
        "layernorm_full_attention_alpha": ALPHA, "layernorm_full_attention_beta": 1.0,
        "layernorm_linear_attention_alpha": ALPHA, "layernorm_linear_attention_beta": 1.0,
        "layernorm_mlp_alpha": ALPHA, "layernorm_mlp_beta": 1.0,
        "max_position_embeddings": 8192, "num_attention_heads": 4, "num_experts_per_tok": 2,
        "num_hidden_layers": 8, "num_key_value_heads": 2, "num_local_experts": 4, "postnorm": True,
        "rms_norm_eps": 1e-5, "rope_theta": 10000000, "rotary_dim": 16, "shared_intermediate_size": [0],
        "shared_moe_mode": "sigmoid", "vocab_size": vocab, "bos_token_id": None, "eos_token_id": None,
    }
    vision = {
        "model_type": "clip_vision_model", "hidden_act": "gelu", "hidden_size": 64, "image_size": 336,
        "intermediate_size": 128, "layer_norm_eps": 1e-5, "num_attention_heads": 4, "num_channels": 3,
        "num_hidden_layers": 2, "patch_size": 14, "projection_dim": 128,
    }
    return {"architectures": ["MiniMaxVL01ForConditionalGeneration"], "model_type": "minimax_vl_01",
            "image_grid_pinpoints": PINPOINTS, "image_token_index": vocab - 1, "projector_hidden_act": "gelu",
            "vision_feature_layer": -1, "vision_feature_select_strategy": "default",
            "text_config": text, "vision_config": vision}


def tokenizer_vocab(tok_dir):
    tj = json.load(open(os.path.join(tok_dir, "tokenizer.json")))
    ids = list(tj["model"]["vocab"].values()) + [t["id"] for t in tj.get("added_tokens", [])]
    return max(ids) + 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, default=1536)
    ap.add_argument("--tokenizer")
    a = ap.parse_args()
    vocab = tokenizer_vocab(a.tokenizer) if a.tokenizer else a.vocab
    items = tensors(vocab, np.random.default_rng(20261122))
    cfg = config(vocab)
    if a.tokenizer:  # the <image> id comes from the tokenizer, not from us
        tj = json.load(open(os.path.join(a.tokenizer, "tokenizer.json")))
        cfg["image_token_index"] = next(t["id"] for t in tj["added_tokens"] if t["content"] == "<image>")
    for name, dtype in (("tiny-random", "F32"), ("tiny-random-bf16", "BF16")):
        d = os.path.join(a.out, name)
        os.makedirs(d, exist_ok=True)
        write_safetensors(os.path.join(d, "model.safetensors"), items, dtype)
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
        json.dump({"process_image_mode": "anyres", "size": [336, 336], "patch_size": 14,
                   "image_grid_pinpoints": PINPOINTS, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                   "image_std": [0.26862954, 0.26130258, 0.27577711]},
                  open(os.path.join(d, "preprocessor_config.json"), "w"), indent=2)
        if a.tokenizer:
            for f in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copy(os.path.join(a.tokenizer, f), d)
    n = sum(x.size for x in items.values())
    print(f"{n} parameters, vocab {vocab}: {n * 4 / 1e6:.1f} MB F32 + {n * 2 / 1e6:.1f} MB BF16")


if __name__ == "__main__":
    main()
