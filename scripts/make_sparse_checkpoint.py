#!/usr/bin/env python3
"""Writes a full-size MiniMax-VL-01 checkpoint whose tensor data are holes.

The directory has the released layout: config.json (remote-code layout),
preprocessor_config.json, model.safetensors.index.json and 414 shards named
model-000NN-of-00414.safetensors. Every shard has a real safetensors header;
its data region is left sparse (ftruncate), so 913 GB of tensors cost only
the headers on disk. The key manifest is built from vision.md §6 and
decoder.md §2 and checked against the SHA-256 that transformers pins for the
released checkpoint (tests/models/minimax_vl_01/test_conversion_minimax_vl_01.py),
so the names are the released ones, not ours.

Usage: make_sparse_checkpoint.py OUTDIR
Standard library only.
"""
import hashlib
import json
import os
import sys

RELEASED_MANIFEST_SHA256 = "d0caf1b714cdfc4caa65b56cbec591668d77b0e2a5d6cf3b5af169531311c886"
NUM_SHARDS = 414

TEXT = dict(hidden=6144, layers=80, heads=64, kv=8, head_dim=128, vocab=200064, inter=9216, experts=32)
VISION = dict(hidden=1024, layers=24, inter=4096, patch=14, image=336)

PINPOINTS = [[a * 336, b * 336] for a in range(1, 7) for b in range(1, 7) if a * b <= 18]


def manifest():
    """(name, shape) in checkpoint order; shapes are [out, in] as PyTorch stores them."""
    v, t = VISION, TEXT
    out = []
    vp = "vision_tower.vision_model."
    npos = (v["image"] // v["patch"]) ** 2 + 1
    out += [(vp + "embeddings.class_embedding", [v["hidden"]]),
            (vp + "embeddings.patch_embedding.weight", [v["hidden"], 3, v["patch"], v["patch"]]),
            (vp + "embeddings.position_embedding.weight", [npos, v["hidden"]]),
            (vp + "pre_layrnorm.weight", [v["hidden"]]), (vp + "pre_layrnorm.bias", [v["hidden"]])]
    for l in range(v["layers"]):
        p = f"{vp}encoder.layers.{l}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out += [(p + f"self_attn.{proj}.weight", [v["hidden"], v["hidden"]]),
                    (p + f"self_attn.{proj}.bias", [v["hidden"]])]
        for ln in ("layer_norm1", "layer_norm2"):
            out += [(p + f"{ln}.weight", [v["hidden"]]), (p + f"{ln}.bias", [v["hidden"]])]
        out += [(p + "mlp.fc1.weight", [v["inter"], v["hidden"]]), (p + "mlp.fc1.bias", [v["inter"]]),
                (p + "mlp.fc2.weight", [v["hidden"], v["inter"]]), (p + "mlp.fc2.bias", [v["hidden"]])]
    H, D = t["hidden"], t["head_dim"]
    out += [("multi_modal_projector.linear_1.weight", [H, v["hidden"]]), ("multi_modal_projector.linear_1.bias", [H]),
            ("multi_modal_projector.linear_2.weight", [H, H]), ("multi_modal_projector.linear_2.bias", [H]),
            ("image_newline", [H])]
    tp = "language_model.model."
    out.append((tp + "embed_tokens.weight", [t["vocab"], H]))
    for l in range(t["layers"]):
        p = f"{tp}layers.{l}."
        out += [(p + "input_layernorm.weight", [H]), (p + "post_attention_layernorm.weight", [H])]
        if (l + 1) % 8 == 0:
            out += [(p + "self_attn.q_proj.weight", [t["heads"] * D, H]),
                    (p + "self_attn.k_proj.weight", [t["kv"] * D, H]),
                    (p + "self_attn.v_proj.weight", [t["kv"] * D, H]),
                    (p + "self_attn.o_proj.weight", [H, t["heads"] * D])]
        else:
            out += [(p + "self_attn.qkv_proj.weight", [3 * t["heads"] * D, H]),
                    (p + "self_attn.output_gate.weight", [t["heads"] * D, H]),
                    (p + "self_attn.norm.weight", [t["heads"] * D]),
                    (p + "self_attn.out_proj.weight", [H, t["heads"] * D])]
        out.append((p + "block_sparse_moe.gate.weight", [t["experts"], H]))
        for e in range(t["experts"]):
            q = f"{p}block_sparse_moe.experts.{e}."
            out += [(q + "w1.weight", [t["inter"], H]), (q + "w3.weight", [t["inter"], H]),
                    (q + "w2.weight", [H, t["inter"]])]
    out += [(tp + "norm.weight", [H]), ("language_model.lm_head.weight", [t["vocab"], H])]
    return out


def nbytes(shape):
    n = 2  # bf16
    for d in shape:
        n *= d
    return n


def split_shards(items, n):
    """Contiguous groups, cut where the running byte count crosses k/n of the total."""
    total = sum(nbytes(s) for _, s in items)
    groups, cur, acc = [], [], 0
    for i, (name, shape) in enumerate(items):
        cur.append((name, shape))
        acc += nbytes(shape)
        left_items, left_groups = len(items) - i - 1, n - len(groups) - 1
        if left_groups > 0 and (acc * n >= total * (len(groups) + 1) or left_items == left_groups):
            groups.append(cur)
            cur = []
    groups.append(cur)
    assert len(groups) == n and all(groups), (len(groups), n)
    return groups


def config():
    text = {
        "model_type": "minimax_text_01", "architectures": ["MiniMaxText01ForCausalLM"],
        "attn_type_list": [int((i + 1) % 8 == 0) for i in range(80)],
        "head_dim": 128, "hidden_size": 6144, "intermediate_size": 9216,
        "layernorm_full_attention_alpha": 3.5565588200778455, "layernorm_full_attention_beta": 1.0,
        "layernorm_linear_attention_alpha": 3.5565588200778455, "layernorm_linear_attention_beta": 1.0,
        "layernorm_mlp_alpha": 3.5565588200778455, "layernorm_mlp_beta": 1.0,
        "max_position_embeddings": 8192, "num_attention_heads": 64, "num_experts_per_tok": 2,
        "num_hidden_layers": 80, "num_key_value_heads": 8, "num_local_experts": 32, "postnorm": True,
        "rms_norm_eps": 1e-5, "rope_theta": 10000000, "rotary_dim": 64, "shared_intermediate_size": [0],
        "shared_moe_mode": "sigmoid", "vocab_size": 200064, "bos_token_id": None, "eos_token_id": None,
    }
    vision = {
        "model_type": "clip_vision_model", "attention_dropout": 0.0, "hidden_act": "gelu", "hidden_size": 1024,
        "image_size": 336, "intermediate_size": 4096, "layer_norm_eps": 1e-5, "num_attention_heads": 16,
        "num_channels": 3, "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 6144,
        "vocab_size": 32000, "auto_map": {"AutoModel": "modeling_clip.CLIPVisionModel"},
    }
    return {"architectures": ["MiniMaxVL01ForConditionalGeneration"], "model_type": "minimax_vl_01",
            "image_grid_pinpoints": PINPOINTS, "image_token_index": 200025, "projector_hidden_act": "gelu",
            "vision_feature_layer": -1, "vision_feature_select_strategy": "default",
            "text_config": text, "vision_config": vision, "torch_dtype": "bfloat16"}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    items = manifest()
    names = sorted(n for n, _ in items)
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
    if len(items) != 8637 or len(set(names)) != 8637 or digest != RELEASED_MANIFEST_SHA256:
        sys.exit(f"manifest mismatch: {len(items)} keys, sha256 {digest}")
    os.makedirs(out, exist_ok=True)
    weight_map = {}
    for k, group in enumerate(split_shards(items, NUM_SHARDS)):
        fname = f"model-{k + 1:05d}-of-{NUM_SHARDS:05d}.safetensors"
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in group:
            header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + nbytes(shape)]}
            off += nbytes(shape)
            weight_map[name] = fname
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * (-len(h) % 8)  # writers pad the header to 8 bytes
        with open(os.path.join(out, fname), "wb") as f:
            f.write(len(h).to_bytes(8, "little") + h)
            f.truncate(8 + len(h) + off)  # the data region stays a hole
    total = sum(nbytes(s) for _, s in items)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config(), f, indent=2)
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump({"process_image_mode": "anyres", "size": [336, 336], "patch_size": 14,
                   "image_grid_pinpoints": PINPOINTS,
                   "image_mean": [0.48145466, 0.4578275, 0.40821073],
                   "image_std": [0.26862954, 0.26130258, 0.27577711]}, f, indent=2)
    print(f"wrote {NUM_SHARDS} sparse shards, {len(items)} tensors, {total / 1e9:.1f} GB apparent, to {out}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
