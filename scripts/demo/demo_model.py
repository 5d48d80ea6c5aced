"""The demo model's shape and what training, evaluation and export share (issue 9).

numpy + Pillow + tokenizers only (no torch), so the config, the preprocessing
and the prompts are the same here, on the GPU machine and in scripts/demo/eval.py.

Architecture: MiniMax-VL-01's blocks at small widths. ViT: CLIP, 336 px tiles,
14 px patches, hidden 128 x 6 layers; projector 128 -> 256 -> 256 (GELU);
decoder hidden 256 x 4 layers, lightning / softmax alternating (attn_type_list
0,1,0,1), 4 heads of 64 with rotary_dim 32, 2 KV heads, MoE 4 experts top-2 of
intermediate 192; vocab 1024 (scripts/demo/make_tokenizer.py). About 5.4M
parameters, 21.5 MB in F32.
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
sys.path.insert(0, HERE)
import gen  # noqa: E402
import make_goldens as mg  # noqa: E402

MODEL_DIR = os.path.join(ROOT, "testdata", "demo-model")
PINPOINTS = [[a * 336, b * 336] for a in range(1, 7) for b in range(1, 7) if a * b <= 18]
VOCAB = 1024
V, VL, VH, VI = 128, 6, 4, 512                 # ViT width, layers, heads, MLP
H, L, NH, D, KV, E, I = 256, 4, 4, 64, 2, 4, 192  # decoder
ATTN = [0, 1, 0, 1]                            # 1 = softmax, 0 = lightning
ALPHA = (2 * L) ** 0.25                        # DeepNorm alpha as the released (2L)^(1/4) (decoder.md §1.1)
USER, AI, EOS = "<beginning_of_sentence>user name=user\n", "<beginning_of_sentence>ai name=assistant\n", "<end_of_sentence>"


def config():
    text = {
        "model_type": "minimax_text_01", "architectures": ["MiniMaxText01ForCausalLM"], "attn_type_list": ATTN,
        "head_dim": D, "hidden_size": H, "intermediate_size": I,
        "layernorm_full_attention_alpha": ALPHA, "layernorm_full_attention_beta": 1.0,
        "layernorm_linear_attention_alpha": ALPHA, "layernorm_linear_attention_beta": 1.0,
        "layernorm_mlp_alpha": ALPHA, "layernorm_mlp_beta": 1.0,
        "max_position_embeddings": 8192, "num_attention_heads": NH, "num_experts_per_tok": 2,
        "num_hidden_layers": L, "num_key_value_heads": KV, "num_local_experts": E, "postnorm": True,
        "rms_norm_eps": 1e-5, "rope_theta": 10000000, "rotary_dim": D // 2, "shared_intermediate_size": [0],
        "shared_moe_mode": "sigmoid", "vocab_size": VOCAB, "bos_token_id": None, "eos_token_id": None,
    }
    vision = {
        "model_type": "clip_vision_model", "hidden_act": "gelu", "hidden_size": V, "image_size": 336,
        "intermediate_size": VI, "layer_norm_eps": 1e-5, "num_attention_heads": VH, "num_channels": 3,
        "num_hidden_layers": VL, "patch_size": 14, "projection_dim": H,
    }
    return {"architectures": ["MiniMaxVL01ForConditionalGeneration"], "model_type": "minimax_vl_01",
            "image_grid_pinpoints": PINPOINTS, "image_token_index": VOCAB - 1, "projector_hidden_act": "gelu",
            "vision_feature_layer": -1, "vision_feature_select_strategy": "default",
            "text_config": text, "vision_config": vision}


PREPROCESSOR = {"process_image_mode": "anyres", "size": [336, 336], "patch_size": 14, "image_grid_pinpoints": PINPOINTS,
                "image_mean": mg.MEAN, "image_std": mg.STD}


def init_weights(seed=0):
    """Released tensor names (vision.md §6, decoder.md §2) -> float32 arrays, a from-scratch init."""
    rng = np.random.default_rng(seed)
    out = {}

    def w(name, *shape, std=0.02):
        out[name] = rng.normal(0.0, std, size=shape).astype(np.float32)

    def const(name, n, v):
        out[name] = np.full(n, v, np.float32)

    vp = "vision_tower.vision_model."
    w(vp + "embeddings.class_embedding", V)
    w(vp + "embeddings.patch_embedding.weight", V, 3, 14, 14)
    w(vp + "embeddings.position_embedding.weight", 577, V)
    const(vp + "pre_layrnorm.weight", V, 1)
    const(vp + "pre_layrnorm.bias", V, 0)
    for l in range(VL):
        p = f"{vp}encoder.layers.{l}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w(p + f"self_attn.{proj}.weight", V, V)
            const(p + f"self_attn.{proj}.bias", V, 0)
        for ln in ("layer_norm1", "layer_norm2"):
            const(p + f"{ln}.weight", V, 1)
            const(p + f"{ln}.bias", V, 0)
        w(p + "mlp.fc1.weight", VI, V)
        const(p + "mlp.fc1.bias", VI, 0)
        w(p + "mlp.fc2.weight", V, VI)
        const(p + "mlp.fc2.bias", V, 0)
    w("multi_modal_projector.linear_1.weight", H, V)
    const("multi_modal_projector.linear_1.bias", H, 0)
    w("multi_modal_projector.linear_2.weight", H, H)
    const("multi_modal_projector.linear_2.bias", H, 0)
    w("image_newline", H)
    tp = "language_model.model."
    w(tp + "embed_tokens.weight", VOCAB, H)
    for l in range(L):
        p = f"{tp}layers.{l}."
        const(p + "input_layernorm.weight", H, 1)
        const(p + "post_attention_layernorm.weight", H, 1)
        if ATTN[l]:
            w(p + "self_attn.q_proj.weight", NH * D, H)
            w(p + "self_attn.k_proj.weight", KV * D, H)
            w(p + "self_attn.v_proj.weight", KV * D, H)
            w(p + "self_attn.o_proj.weight", H, NH * D)
        else:
            w(p + "self_attn.qkv_proj.weight", 3 * NH * D, H)
            w(p + "self_attn.output_gate.weight", NH * D, H)
            const(p + "self_attn.norm.weight", NH * D, 1)
            w(p + "self_attn.out_proj.weight", H, NH * D)
        w(p + "block_sparse_moe.gate.weight", E, H)
        for e in range(E):
            q = f"{p}block_sparse_moe.experts.{e}."
            w(q + "w1.weight", I, H)
            w(q + "w3.weight", I, H)
            w(q + "w2.weight", H, I)
    const(tp + "norm.weight", H, 1)
    w("language_model.lm_head.weight", VOCAB, H)
    return out


def write_model_dir(path, tensors, tokenizer_dir=MODEL_DIR):
    """An HF-layout model directory: config.json (released layout), preprocessor, F32 safetensors, tokenizer."""
    import shutil
    os.makedirs(path, exist_ok=True)
    mg.write_safetensors(os.path.join(path, "model.safetensors"), tensors)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config(), f, indent=2)
    with open(os.path.join(path, "preprocessor_config.json"), "w") as f:
        json.dump(PREPROCESSOR, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if os.path.abspath(tokenizer_dir) != os.path.abspath(path):
            shutil.copy(os.path.join(tokenizer_dir, name), path)


def preprocess_u8(img):
    """uint8 HxWx3 -> (uint8 tiles [1+R*C, 336, 336, 3], W, H, cols, rows): the anyres of vision.md §3
    (tests/reference/make_goldens.py), each resize done as a horizontal then a vertical pass, the
    order the C engine and Pillow <= 12.1 use, so that any Pillow gives the same pixels."""
    from PIL import Image
    im = Image.fromarray(img, "RGB")
    W, Hh = im.size
    cw, ch = mg.select_best_resolution(W, Hh, [tuple(p) for p in PINPOINTS])
    rw, rh = (cw, cw * Hh // W) if W * ch > Hh * cw else (ch * W // Hh, ch)

    def resize(x, w, h):
        x = x.resize((w, x.height), Image.BICUBIC) if w != x.width else x
        return x.resize((w, h), Image.BICUBIC) if h != x.height else x
    canvas = Image.new("RGB", (cw, ch), (0, 0, 0))
    canvas.paste(resize(im, rw, rh), ((cw - rw) // 2, (ch - rh) // 2))
    tiles = [canvas.crop((x, y, x + 336, y + 336)) for y in range(0, ch, 336) for x in range(0, cw, 336)]
    u8 = np.stack([np.asarray(resize(im, 336, 336))] + [np.asarray(t) for t in tiles])
    return u8, W, Hh, cw // 336, ch // 336


def eval_tasks(caption, qa):
    """What the evaluation asks per image: the caption, then the first question of each type."""
    out, seen = [("caption", gen.CAPTION_PROMPT, caption)], set()
    for t, q, a in qa:
        if t not in seen:
            seen.add(t)
            out.append((t, q, a))
    return out


class Prompter:
    """Token ids of one-turn prompts (as apps/prompt.c renders them) and of training turns."""

    def __init__(self, tokenizer_json):
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(tokenizer_json)
        self.image_id = self.tok.token_to_id("<image>")
        self.eos = self.tok.token_to_id(EOS)

    def enc(self, s):
        return self.tok.encode(s, add_special_tokens=False).ids

    def first_turn(self, question, n_image):
        pre = self.enc(USER + "<image>" + question + EOS + "\n" + AI)
        k = pre.index(self.image_id)
        return pre[:k] + [self.image_id] * n_image + pre[k + 1:]

    def turns(self, qas, n_image):
        """ids and target mask of a conversation: image + first question, then answer/question turns."""
        ids, tgt = [], []
        for j, (q, a) in enumerate(qas):
            ctx = self.first_turn(q, n_image) if j == 0 else self.enc("\n" + USER + q + EOS + "\n" + AI)
            ans = self.enc(a) + [self.eos]
            ids += ctx + ans
            tgt += [False] * len(ctx) + [True] * len(ans)
        return ids, tgt

    def decode(self, ids):
        return self.tok.decode([i for i in ids if i != self.eos], skip_special_tokens=False)
