#!/usr/bin/env python3
"""Goldens for the CPU model (issue 5) from an independent reference.

    make_goldens.py --images            # once, here: writes the two test PNGs
    make_goldens.py OUTDIR              # on a machine with torch + transformers
    make_goldens.py --pixels PX.npz     # Pillow preprocessing only (when the torch
    make_goldens.py OUTDIR --pixels-from PX.npz   # machine has no Pillow)

The reference is transformers' own classes: CLIPVisionModel for the ViT and
MiniMaxForCausalLM for the decoder, loaded with the tiny model's weights,
plus glue written from the spec: Pillow anyres preprocessing (vision.md §3),
the projector MLP and the LLaVA-NeXT packing with image_newline (§2, §4.1),
the merge at the image token id (§4.4). MiniMaxForCausalLM is patched where
it departs from the MiniMax remote code (decoder.md §5, §4.2): see
tests/reference/README.md for each check. Nothing here calls minimax-vl.

Writes OUTDIR/<model>.safetensors (F32 tensors, small) per model directory.
Stored per case: the ids, 12 prompt positions, logits at them, 32 greedy
tokens (full recompute each step, no cache: independent of any cache code),
hidden states at those positions after every layer; per image: geometry and
4096-value samples of the pixels, ViT features, projector output and packed
embeddings, at flat indices (k*7919 + 13) mod size.
"""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLD = os.path.join(ROOT, "testdata", "goldens")
IMAGES = [("img_200x150.png", 200, 150), ("img_300x500.png", 300, 500)]
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
NSAMPLE, NPOS, NGREEDY = 4096, 12, 32


def make_images():
    from PIL import Image
    rng = np.random.default_rng(7)
    for name, w, h in IMAGES:
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        r = 128 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0)
        g = 255 * x / w
        b = 255 * (1 - y / h)
        a = np.stack([r, g, b], -1) + rng.normal(0, 2, size=(h, w, 3))
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB").save(os.path.join(GOLD, name))


# ---- preprocessing, written from vision.md §3 ---------------------------------

def select_best_resolution(W, H, pinpoints):
    best, best_eff, best_waste = None, -1, float("inf")
    for cw, ch in pinpoints:
        scale = min(cw / W, ch / H)
        dw, dh = int(W * scale), int(H * scale)
        eff = min(dw * dh, W * H)
        waste = cw * ch - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (cw, ch), eff, waste
    return best


def preprocess(path, pinpoints, size=336):
    from PIL import Image
    im = Image.open(path)
    W, H = im.size
    cw, ch = select_best_resolution(W, H, pinpoints)
    if W * ch > H * cw:
        rw, rh = cw, cw * H // W
    else:
        rw, rh = ch * W // H, ch
    canvas = Image.new("RGB", (cw, ch), (0, 0, 0))
    canvas.paste(im.resize((rw, rh), Image.BICUBIC), ((cw - rw) // 2, (ch - rh) // 2))
    tiles = [canvas.crop((x, y, x + size, y + size)) for y in range(0, ch, size) for x in range(0, cw, size)]
    patches = [im.resize((size, size), Image.BICUBIC)] + tiles
    u8 = np.stack([np.asarray(p.convert("RGB")) for p in patches])
    x = u8.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    x = (x - np.asarray(MEAN, np.float32)[None, :, None, None]) / np.asarray(STD, np.float32)[None, :, None, None]
    return x.astype(np.float32), W, H, cw // size, ch // size


def token_count(W, H, cols, rows, grid=24):  # vision.md §4.2
    FW, FH = cols * grid, rows * grid
    if W * FH > H * FW:
        kc, kr = FW, FH - 2 * ((FH - H * FW // W) // 2)
    else:
        kr, kc = FH, FW - 2 * ((FW - W * FH // H) // 2)
    return grid * grid + kr * (kc + 1)


# ---- safetensors in and out (numpy) ---------------------------------------------

def read_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        b = data[v["data_offsets"][0]:v["data_offsets"][1]]
        if v["dtype"] == "F32":
            a = np.frombuffer(b, "<f4")
        elif v["dtype"] == "BF16":
            a = (np.frombuffer(b, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"{path}: unexpected dtype {v['dtype']}")
        out[k] = (a.reshape(v["shape"]).copy(), v["dtype"])
    return out


def write_safetensors(path, items):
    """Every item as F32 (the goldens and the demo model's exports)."""
    make_tiny_model.write_safetensors(path, {k: np.asarray(v, np.float32) for k, v in items.items()}, "F32")


def sample(t):
    flat = t.reshape(-1)
    idx = (np.arange(NSAMPLE, dtype=np.int64) * 7919 + 13) % flat.shape[0]
    return flat[idx]


# ---- the reference model ------------------------------------------------------------

class Reference:
    def __init__(self, model_dir, compute_dtype, torch, checks):
        import transformers
        from transformers import CLIPVisionConfig, CLIPVisionModel, MiniMaxConfig, MiniMaxForCausalLM
        from transformers.models.minimax import modeling_minimax as mm
        self.torch, self.dt = torch, compute_dtype
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.cfg = cfg
        w = read_safetensors(os.path.join(model_dir, "model.safetensors"))
        T = lambda k: torch.from_numpy(w[k][0])
        vc, tc = cfg["vision_config"], cfg["text_config"]

        # vision tower: HF CLIP, post_layernorm present in the module but never used (§1.2)
        vcfg = CLIPVisionConfig(**{k: v for k, v in vc.items() if k != "model_type"})
        vcfg._attn_implementation = "eager"
        self.vit = CLIPVisionModel(vcfg)
        # transformers 5 flattened CLIPVisionModel (no .vision_model); accept both layouts
        self.vtower = getattr(self.vit, "vision_model", self.vit)
        pre = "vision_tower." if self.vtower is not self.vit else "vision_tower.vision_model."
        sd = {k[len(pre):]: T(k) for k in w if k.startswith(pre)}
        missing, unexpected = self.vit.load_state_dict(sd, strict=False)
        assert not unexpected, unexpected
        assert all("post_layernorm" in m or "position_ids" in m for m in missing), missing
        checks.append(f"CLIPVisionModel: checkpoint loads with only {sorted(missing)} missing (post-LN, never applied)")
        self.proj = torch.nn.Sequential(torch.nn.Linear(vc["hidden_size"], tc["hidden_size"]), torch.nn.GELU(),
                                        torch.nn.Linear(tc["hidden_size"], tc["hidden_size"]))
        self.proj[0].weight.data, self.proj[0].bias.data = T("multi_modal_projector.linear_1.weight"), T("multi_modal_projector.linear_1.bias")
        self.proj[2].weight.data, self.proj[2].bias.data = T("multi_modal_projector.linear_2.weight"), T("multi_modal_projector.linear_2.bias")
        self.newline = T("image_newline")

        # decoder: transformers MiniMaxForCausalLM from the remote-code config layout
        L = tc["num_hidden_layers"]
        self.L, self.rd, self.hd = L, tc["rotary_dim"], tc["head_dim"]
        mcfg = MiniMaxConfig(
            vocab_size=tc["vocab_size"], hidden_size=tc["hidden_size"], intermediate_size=tc["intermediate_size"],
            num_hidden_layers=L, num_attention_heads=tc["num_attention_heads"],
            num_key_value_heads=tc["num_key_value_heads"], head_dim=tc["head_dim"], hidden_act="silu",
            max_position_embeddings=tc["max_position_embeddings"], rms_norm_eps=tc["rms_norm_eps"],
            num_experts_per_tok=tc["num_experts_per_tok"], num_local_experts=tc["num_local_experts"],
            rope_parameters={"rope_type": "default", "rope_theta": tc["rope_theta"]},
            layer_types=["full_attention" if t else "linear_attention" for t in tc["attn_type_list"]],
            block_size=256, tie_word_embeddings=False,
            full_attn_alpha_factor=tc["layernorm_full_attention_alpha"], full_attn_beta_factor=tc["layernorm_full_attention_beta"],
            linear_attn_alpha_factor=tc["layernorm_linear_attention_alpha"], linear_attn_beta_factor=tc["layernorm_linear_attention_beta"],
            mlp_alpha_factor=tc["layernorm_mlp_alpha"], mlp_beta_factor=tc["layernorm_mlp_beta"])
        mcfg._attn_implementation = "eager"
        self.lm = MiniMaxForCausalLM(mcfg)
        target = self.lm.state_dict()
        sd = {}
        for k in w:
            if not k.startswith("language_model."):
                continue
            n = k[len("language_model."):]
            if ".block_sparse_moe.experts." in n and "model.layers.0.mlp.experts.gate_up_proj" in target:
                continue
            for cand in (n.replace("block_sparse_moe.", "mlp."), n):
                if cand in target:
                    sd[cand] = T(k)
                    break
            else:
                raise SystemExit(f"no home for {k} in MiniMaxForCausalLM")
        E, I = tc["num_local_experts"], tc["intermediate_size"]
        if "model.layers.0.mlp.experts.gate_up_proj" in target:
            for l in range(L):
                p = f"language_model.model.layers.{l}.block_sparse_moe.experts."
                gu = torch.stack([torch.cat([T(p + f"{e}.w1.weight"), T(p + f"{e}.w3.weight")], 0) for e in range(E)])
                dn = torch.stack([T(p + f"{e}.w2.weight") for e in range(E)])
                tg, td = target[f"model.layers.{l}.mlp.experts.gate_up_proj"], target[f"model.layers.{l}.mlp.experts.down_proj"]
                sd[f"model.layers.{l}.mlp.experts.gate_up_proj"] = gu if tg.shape == gu.shape else gu.transpose(1, 2).contiguous()
                sd[f"model.layers.{l}.mlp.experts.down_proj"] = dn if td.shape == dn.shape else dn.transpose(1, 2).contiguous()
                assert sd[f"model.layers.{l}.mlp.experts.gate_up_proj"].shape == tg.shape
                assert sd[f"model.layers.{l}.mlp.experts.down_proj"].shape == td.shape
        missing, unexpected = self.lm.load_state_dict(sd, strict=False)
        assert not unexpected, unexpected
        bad = [m for m in missing if not any(s in m for s in ("slope_rate", "query_decay", "key_decay", "diagonal_decay"))]
        assert not bad, bad
        checks.append("MiniMaxForCausalLM: every checkpoint tensor maps (experts fused as gate_up_proj = [w1; w3] when the "
                      "class fuses them); only the derived decay buffers are not in the checkpoint")
        # the MoE block against the spec written out (decoder.md §6): fp32 softmax, top-k, renormalise, SwiGLU
        with torch.no_grad():
            x = torch.randn(7, tc["hidden_size"], generator=torch.Generator().manual_seed(1))
            got = self.lm.model.layers[0].mlp(x[None])
            got = (got[0] if isinstance(got, tuple) else got)[0]
            p = f"language_model.model.layers.0.block_sparse_moe."
            pr = torch.softmax(x @ T(p + "gate.weight").T, -1)
            tv, ti = torch.topk(pr, tc["num_experts_per_tok"], -1)
            tv = tv / tv.sum(-1, keepdim=True)
            want = torch.zeros_like(x)
            for r in range(x.shape[0]):
                for j in range(ti.shape[1]):
                    e = int(ti[r, j])
                    hcur = torch.nn.functional.silu(x[r] @ T(p + f"experts.{e}.w1.weight").T) * (x[r] @ T(p + f"experts.{e}.w3.weight").T)
                    want[r] += tv[r, j] * (hcur @ T(p + f"experts.{e}.w2.weight").T)
            err = float((got - want).abs().max() / want.abs().max())
            assert err < 1e-5, err
        checks.append(f"MoE block of layer 0 equals the spec written out (softmax, top-k, renormalise, SwiGLU): rel err {err:.1e}")

        # patch 1: slopes as the remote code: 2^(-8(h+1)/heads) * (1 - l/(L-1) + 1e-5) (decoder.md §4.2)
        heads, worst = tc["num_attention_heads"], 0.0
        for l, layer in enumerate(self.lm.model.layers):
            at = layer.self_attn
            if not isinstance(at, mm.MiniMaxLightningAttention):
                continue
            native = at.get_slope_rate().reshape(-1)
            remote = torch.tensor([2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)], dtype=torch.float32)
            remote = remote * (1 - l / (L - 1) + 1e-5)
            assert torch.allclose(native, remote, rtol=1e-4), (native, remote)
            worst = max(worst, float(((native - remote).abs() / remote).max()))
            s = remote[:, None, None]
            q, k, d = at.decay_factors(s)
            at.slope_rate, at.query_decay, at.key_decay, at.diagonal_decay = s, q, k, d
            # patch check 2: the lightning output norm eps is 1e-6 (RMSNorm default), not rms_norm_eps
            assert abs(at.norm.variance_epsilon - 1e-6) < 1e-12, at.norm.variance_epsilon
        checks.append("slopes: native 1 - l/(L-1+1e-5) + 1e-5 replaced by the remote 1 - l/(L-1) + 1e-5 (largest rel. diff over lightning layers: %.2e)" % worst)
        checks.append("lightning output RMSNorm eps = 1e-6 (MiniMaxRMSNorm default) checked; decoder norms use rms_norm_eps 1e-5")

        # patch 3: partial NeoX RoPE on the first rotary_dim dims (decoder.md §5); 5.x rotates all head_dim
        rd = self.rd
        inv = 1.0 / (tc["rope_theta"] ** (torch.arange(0, rd, 2, dtype=torch.int64).float() / rd))
        self.lm.model.rotary_emb.inv_freq = inv
        self.lm.model.rotary_emb.original_inv_freq = inv.clone()
        self.rope_calls = 0

        def partial_rope(q, k, cos, sin, unsqueeze_dim=1):
            self.rope_calls += 1
            cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
            assert cos.shape[-1] == rd

            def rot(x):
                xr, xp = x[..., :rd], x[..., rd:]
                x1, x2 = xr[..., : rd // 2], xr[..., rd // 2:]
                rh = torch.cat((-x2, x1), dim=-1)
                return torch.cat([((xr * cos) + (rh * sin)).to(x.dtype), xp], dim=-1)
            return rot(q), rot(k)
        mm.apply_rotary_pos_emb = partial_rope
        checks.append(f"RoPE: inv_freq rebuilt over rotary_dim={rd} and apply_rotary_pos_emb replaced by a partial "
                      f"NeoX rotation of dims [0, {rd}) (5.x rotates all {self.hd}); the replacement is asserted to run")

        # patch 4 (bf16 compute only): the lightning block loop with the dtypes of the remote code
        # (decoder.md §4.4), not transformers' (which keeps the state and the decays in the model dtype,
        # decoder.md §8.2): fp32 state and decays; q k^T a bf16 GEMM rounded to bf16, then fp32 with the
        # diagonal decay and v; the block output rounded to bf16; (k * k_decay) rounded to bf16 and its
        # product with v a bf16 GEMM, added to the fp32 decayed state.
        if compute_dtype == torch.bfloat16:
            def remote_lightning(at, hidden_states, *args, **kwargs):
                B, T, _ = hidden_states.shape
                H, D, BS = at.num_attention_heads, at.head_dim, at.block_size
                qkv = at.act_fn(at.qkv_proj(hidden_states)).reshape(B, T, H, 3 * D)
                q, k, v = (x.transpose(1, 2) for x in torch.split(qkv, D, dim=3))
                s = at.remote_slope  # fp32 [H, 1, 1]
                kv = torch.zeros(B, H, D, D, dtype=torch.float32)
                out = []
                for b0 in range(0, T, BS):
                    m = min(BS, T - b0)
                    qb, kb, vb = q[:, :, b0:b0 + m], k[:, :, b0:b0 + m], v[:, :, b0:b0 + m]
                    c = torch.arange(m, dtype=torch.float32)
                    qd = torch.exp(-s * (c + 1)[:, None])          # [H, m, 1]
                    kd = torch.exp(-s * (m - 1 - c)[:, None])      # [H, m, 1]
                    rel = c[:, None] - c[None, :]
                    diag = torch.where(rel >= 0, torch.exp(-s * rel.clamp(min=0)), torch.zeros(()))  # [H, m, m]
                    qk = torch.matmul(qb, kb.transpose(-1, -2))      # bf16 GEMM, bf16 result
                    o = torch.matmul(qk.float() * diag, vb.float()) + torch.matmul(qb.float() * qd, kv)
                    out.append(o.to(hidden_states.dtype))
                    upd = torch.matmul((kb.float() * kd).to(hidden_states.dtype).transpose(-1, -2), vb)
                    kv = kv * torch.exp(-s * m) + upd.float()
                o = torch.cat(out, dim=-2).transpose(1, 2).reshape(B, T, H * D)
                o = at.norm(o)
                o = torch.sigmoid(at.output_gate(hidden_states)) * o
                return at.out_proj(o), kv
            worst = 0.0
            for l, layer in enumerate(self.lm.model.layers):
                at = layer.self_attn
                if isinstance(at, mm.MiniMaxLightningAttention):
                    at.remote_slope = at.slope_rate.clone().float()
                    # still in fp32 here: the replacement must equal transformers' own loop (300 tokens: 2 blocks)
                    x = torch.randn(1, 300, tc["hidden_size"], generator=torch.Generator().manual_seed(l))
                    with torch.no_grad():
                        want = at.forward(x, None, None)[0]
                        got = remote_lightning(at, x)[0]
                    worst = max(worst, float((got - want).abs().max() / want.abs().max()))
                    at.forward = (lambda a: (lambda *x, **kw: remote_lightning(a, *x, **kw)))(at)
            assert worst < 1e-5, worst
            print(f"remote-dtype lightning loop equals transformers' in fp32: rel err {worst:.1e}", flush=True)
            checks.append("bf16 compute: lightning block loop replaced by the remote code's dtypes (fp32 state and "
                          "decays, bf16 q k^T and state-update GEMMs, bf16 block output), decoder.md §4.4")

        # check 4: post-norm placement, read from the layer source
        import inspect
        src = inspect.getsource(mm.MiniMaxDecoderLayer.forward).replace(" ", "")
        assert "hidden_states=self.input_layernorm(hidden_states)\nresidual=hidden_states" in src, "post-norm layout changed"
        assert "residual*self.attn_alpha_factor+hidden_states*self.attn_beta_factor" in src
        checks.append("post-norm: the layer source sets residual = input_layernorm(h) and h = residual*alpha + out*beta (decoder.md §3)")
        checks.append(f"transformers {transformers.__version__}, torch {torch.__version__}")

        self.vit.to(compute_dtype).eval()
        self.proj.to(compute_dtype)
        self.newline = self.newline.to(compute_dtype)
        self.lm.to(compute_dtype).eval()
        # .to() casts buffers; cos/sin tables are fp32 in the reference (decoder.md §5), so restore inv_freq
        self.lm.model.rotary_emb.inv_freq = inv
        self.lm.model.rotary_emb.original_inv_freq = inv.clone()

    def image(self, px, W, H, cols, rows):
        torch = self.torch
        feats = {}
        h = self.vtower.encoder.layers[-1].register_forward_hook(
            lambda m, i, o: feats.__setitem__("x", o[0] if isinstance(o, tuple) else o))
        with torch.no_grad():
            out = self.vit(pixel_values=torch.from_numpy(px).to(self.dt))
        h.remove()
        assert torch.equal(out.last_hidden_state, feats["x"]), "last_hidden_state is not the last layer output"
        f = feats["x"][:, 1:, :]  # drop CLS, no post-LN (§1.3)
        with torch.no_grad():
            p = self.proj(f)
        D, g = p.shape[-1], int(math.isqrt(p.shape[1]))
        base = p[0]
        grid = p[1:].reshape(rows, cols, g, g, D).permute(4, 0, 2, 1, 3).flatten(1, 2).flatten(2, 3)
        FH, FW = grid.shape[1], grid.shape[2]
        if W * FH > H * FW:
            nh = H * FW // W
            pad = (FH - nh) // 2
            grid = grid[:, pad:FH - pad, :]
        else:
            nw = W * FH // H
            pad = (FW - nw) // 2
            grid = grid[:, :, pad:FW - pad]
        grid = torch.cat([grid, self.newline[:, None, None].expand(D, grid.shape[1], 1)], dim=2)
        packed = torch.cat([base, grid.flatten(1, 2).transpose(0, 1)], 0)
        return f, p, packed

    def forward(self, emb):
        torch = self.torch
        outs = []
        hooks = [l.register_forward_hook(lambda m, i, o: outs.append(o[0] if isinstance(o, tuple) else o))
                 for l in self.lm.model.layers]
        with torch.no_grad():
            logits = self.lm(inputs_embeds=emb[None], use_cache=False).logits[0]
        for h in hooks:
            h.remove()
        return logits.float(), [o[0].float() for o in outs]

    def greedy(self, emb, n):
        torch = self.torch
        toks = []
        for _ in range(n):
            with torch.no_grad():
                lg = self.lm(inputs_embeds=emb[None], use_cache=False).logits[0, -1].float()
            t = int(torch.argmax(lg))
            toks.append(t)
            with torch.no_grad():
                emb = torch.cat([emb, self.lm.model.embed_tokens(torch.tensor([t]))], 0)
        return toks


def cases(image_id, counts):
    rng = np.random.default_rng(5)
    t = lambda n: rng.integers(0, image_id, size=n).tolist()
    img = lambda k: [image_id] * counts[k]
    return [("text", t(48), []),
            ("image1", t(10) + img(0) + t(12), [0]),
            ("image2", t(6) + img(0) + t(7) + img(1) + t(5), [0, 1]),
            ("long", t(700), [])]


def main():
    if sys.argv[1:] == ["--images"]:
        make_images()
        return
    if sys.argv[1] == "--pixels":  # Pillow preprocessing here, for a torch machine without Pillow
        pp = json.load(open(os.path.join(ROOT, "testdata", "tiny-random", "preprocessor_config.json")))
        pins = [tuple(p) for p in pp["image_grid_pinpoints"]]
        res = [preprocess(os.path.join(GOLD, name), pins) for name, _, _ in IMAGES]
        np.savez(sys.argv[2], **{f"px{k}": r[0] for k, r in enumerate(res)},
                 **{f"geom{k}": np.array(r[1:]) for k, r in enumerate(res)})
        return
    out = sys.argv[1]
    pixels = np.load(sys.argv[3]) if sys.argv[2:3] == ["--pixels-from"] else None
    os.makedirs(out, exist_ok=True)
    import torch
    torch.manual_seed(0)
    dev_note = []
    for model in ("tiny-random", "tiny-random-bf16"):
        mdir = os.path.join(ROOT, "testdata", model)
        cfg = json.load(open(os.path.join(mdir, "config.json")))
        pp = json.load(open(os.path.join(mdir, "preprocessor_config.json")))
        pins = [tuple(p) for p in pp["image_grid_pinpoints"]]
        image_id = cfg["image_token_index"]
        # F32 compute for both; for the BF16 model also bf16 compute (as HF runs it)
        variants = [("", torch.float32)] + ([("bf16compute.", torch.bfloat16)] if "bf16" in model else [])
        items, checks = {}, []
        if pixels is not None:
            imgs = [(pixels[f"px{k}"],) + tuple(int(v) for v in pixels[f"geom{k}"]) for k in range(len(IMAGES))]
        else:
            imgs = [preprocess(os.path.join(GOLD, name), pins) for name, _, _ in IMAGES]
        counts = [token_count(W, H, c, r) for _, W, H, c, r in imgs]
        for pre, dt in variants:
          try:
            ref = Reference(mdir, dt, torch, checks if not pre else [])
            packed = []
            for k, (px, W, H, c, r) in enumerate(imgs):
                f, p, pk = ref.image(px, W, H, c, r)
                assert pk.shape[0] == counts[k], (pk.shape, counts[k])
                packed.append(pk)
                if not pre:
                    items[f"image.{k}.geom"] = np.array([W, H, c, r, counts[k]], np.float32)
                    items[f"image.{k}.pixels"] = sample(px)
                    items[f"image.{k}.vit"] = sample(f.float().numpy())
                    items[f"image.{k}.proj"] = sample(p.float().numpy())
                    items[f"image.{k}.packed"] = sample(pk.float().numpy())
            for name, ids, ims in cases(image_id, counts):
                with torch.no_grad():
                    emb = ref.lm.model.embed_tokens(torch.tensor(ids)).clone()
                pos = [i for i, x in enumerate(ids) if x == image_id]
                if ims:
                    allimg = torch.cat([packed[k] for k in ims], 0)
                    assert allimg.shape[0] == len(pos)
                    emb[pos] = allimg.to(emb.dtype)
                logits, hidden = ref.forward(emb)
                sel = np.unique(np.round(np.linspace(0, len(ids) - 1, NPOS)).astype(np.int64))
                selt = torch.from_numpy(sel)
                if not pre:
                    items[f"case.{name}.ids"] = np.array(ids, np.float32)
                    items[f"case.{name}.images"] = np.array(ims if ims else [-1], np.float32)
                    items[f"case.{name}.positions"] = sel.astype(np.float32)
                    hs = [emb.float()] + hidden
                    items[f"case.{name}.hidden"] = np.stack([h[selt].numpy() for h in hs])
                items[f"case.{name}.{pre}logits"] = logits[selt].numpy()
                items[f"case.{name}.{pre}greedy"] = np.array(ref.greedy(emb, NGREEDY), np.float32)
                assert ref.rope_calls > 0, "the partial RoPE patch never ran"
                print(model, pre or "f32", name, len(ids), "tokens; greedy", items[f"case.{name}.{pre}greedy"][:8], flush=True)
          except Exception:
            import traceback
            traceback.print_exc()
            print(f"FAILED: {model} {pre or 'f32'}; writing what was done", flush=True)
        write_safetensors(os.path.join(out, model + ".safetensors"), items)
        if checks:
            dev_note = checks
    with open(os.path.join(out, "checks.txt"), "w") as f:
        f.write("\n".join(dev_note) + "\n")
    print("\n".join(dev_note))


if __name__ == "__main__":
    main()
