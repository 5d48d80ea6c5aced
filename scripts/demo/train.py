#!/usr/bin/env python3
"""Trains the demo model (issue 9) on the GPU machine, then greedy-decodes the
held-out evaluation set with the trained weights reloaded from disk.

    train.py OUTDIR [--seconds S] [--eval-n N] [--batch-images B] [--workers W]
             [--init DIR] [--lr LR] [--vit-lr-mult M] [--model DIR]

The model is the reference of tests/reference/make_goldens.py (transformers'
CLIPVisionModel and MiniMaxForCausalLM, patched for partial RoPE and the
remote-code slopes, plus the spec's projector / packing / merge glue), built
from a seeded from-scratch init (scripts/demo/demo_model.py) and trained with
bf16 autocast, the data drawn on the fly by worker processes from
scripts/demo/gen.py (training seed). Each image gives two one-turn sequences,
its caption and one question, so no answer can be copied from an earlier turn;
loss only on the answer tokens. --vit-lr-mult scales the ViT's learning rate.

Writes OUTDIR/model/ (the HF-layout directory, F32, released tensor names),
OUTDIR/greedy.jsonl (fp32 greedy answers of the reloaded model on the eval
tasks, TF32 off) and prints the training log and the reference's own scores.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_model as dm  # noqa: E402
import gen  # noqa: E402

mg = dm.mg


def make_item(prompter, k):
    """One image, two one-turn sequences: the caption, and one question (a type drawn uniformly, then
    one of its questions). One task per sequence, so that no answer can be copied from an earlier turn."""
    img, cap, qa = gen.sample(gen.TRAIN_SEED, k)
    u8, W, H, cols, rows = dm.preprocess_u8(img)
    n = mg.token_count(W, H, cols, rows)
    rng = np.random.default_rng([77, k])
    types = sorted({t for t, _, _ in qa})
    t = types[int(rng.integers(len(types)))]
    pool = [(q, a) for tt, q, a in qa if tt == t]
    seqs = [prompter.turns([(gen.CAPTION_PROMPT, cap)], n), prompter.turns([pool[int(rng.integers(len(pool)))]], n)]
    return {"u8": u8, "geom": (W, H, cols, rows), "seqs": seqs, "len": max(len(s[0]) for s in seqs)}


def collate(items):
    import torch
    seqs = [(i, ids, tgt) for i, it in enumerate(items) for ids, tgt in it["seqs"]]
    Lmax = max(len(s[1]) for s in seqs)
    ids = torch.zeros(len(seqs), Lmax, dtype=torch.long)
    tgt = torch.zeros(len(seqs), Lmax, dtype=torch.bool)
    for r, (_, a, t) in enumerate(seqs):
        ids[r, :len(a)] = torch.tensor(a)
        tgt[r, :len(t)] = torch.tensor(t)
    return {"tiles": torch.from_numpy(np.concatenate([it["u8"] for it in items])), "ids": ids, "tgt": tgt,
            "geoms": [it["geom"] for it in items], "seq_img": [s[0] for s in seqs]}


def stream(batch_images, tokenizer_json):
    import torch

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            wi = torch.utils.data.get_worker_info()
            wid, nw = (wi.id, wi.num_workers) if wi else (0, 1)
            prompter = dm.Prompter(tokenizer_json)
            k = wid
            while True:  # 4 batches at a time, sorted by length so that padding stays small
                items = []
                for _ in range(4 * batch_images):
                    items.append(make_item(prompter, k))
                    k += nw
                items.sort(key=lambda it: it["len"])
                for j in range(4):
                    yield collate(items[j * batch_images:(j + 1) * batch_images])
    return Stream()


class Model:
    """The reference's modules, trainable: vit, proj, newline, lm (MiniMaxForCausalLM)."""

    def __init__(self, model_dir, torch, device):
        checks = []
        self.ref = mg.Reference(model_dir, torch.float32, torch, checks)
        self.torch, self.device = torch, device
        self.ref.newline = torch.nn.Parameter(self.ref.newline.clone())
        for mod in (self.ref.vit, self.ref.lm):
            try:
                mod.set_attn_implementation("sdpa")
            except Exception as e:  # older transformers: the config attribute
                print("set_attn_implementation:", e)
                mod.config._attn_implementation = "sdpa"
        self.modules = torch.nn.ModuleList([self.ref.vit, self.ref.proj, self.ref.lm]).to(device)
        self.ref.newline.data = self.ref.newline.data.to(device)
        self.mean = torch.tensor(mg.MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(mg.STD, device=device).view(1, 3, 1, 1)
        self.image_id = dm.VOCAB - 1

    def params(self):
        return list(self.modules.parameters()) + [self.ref.newline]

    def images(self, tiles_u8, geoms):
        """uint8 tiles [T, 336, 336, 3] of several images -> packed embeddings per image (vision.md §2, §4.1)."""
        torch = self.torch
        px = tiles_u8.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        px = (px - self.mean) / self.std
        f = self.ref.vit(pixel_values=px).last_hidden_state[:, 1:, :]  # no post-LN, no CLS (§1.3)
        p = self.ref.proj(f)
        out, t = [], 0
        for W, H, cols, rows in geoms:
            Dm, g = p.shape[-1], 24
            base = p[t]
            grid = p[t + 1:t + 1 + rows * cols].reshape(rows, cols, g, g, Dm).permute(4, 0, 2, 1, 3)
            grid = grid.flatten(1, 2).flatten(2, 3)
            FH, FW = grid.shape[1], grid.shape[2]
            if W * FH > H * FW:
                pad = (FH - H * FW // W) // 2
                grid = grid[:, pad:FH - pad, :]
            else:
                pad = (FW - W * FH // H) // 2
                grid = grid[:, :, pad:FW - pad]
            nl = self.ref.newline.to(grid.dtype)[:, None, None].expand(Dm, grid.shape[1], 1)
            grid = torch.cat([grid, nl], dim=2)
            out.append(torch.cat([base, grid.flatten(1, 2).transpose(0, 1)], 0))
            t += 1 + rows * cols
        return out

    def embed(self, ids, packed, seq_img):
        emb = self.ref.lm.model.embed_tokens(ids)
        mask = ids == self.image_id
        emb = emb.clone()
        emb[mask] = self.torch.cat([packed[i] for i in seq_img], 0).to(emb.dtype)
        return emb

    def hidden(self, emb):
        return self.ref.lm.model(inputs_embeds=emb, use_cache=False).last_hidden_state

    def export(self):
        """Trained tensors under the released names, float32 numpy (the inverse of Reference's load)."""
        torch = self.torch
        vsd = {k: v.detach().float().cpu() for k, v in self.ref.vit.state_dict().items()}
        lsd = {k: v.detach().float().cpu() for k, v in self.ref.lm.state_dict().items()}
        pre = "vision_tower." if self.ref.vtower is not self.ref.vit else "vision_tower.vision_model."
        out = {}
        for name, a in dm.init_weights().items():
            if name.startswith(pre):
                t = vsd[name[len(pre):]]
            elif name.startswith("multi_modal_projector."):
                lin = self.ref.proj[0 if ".linear_1." in name else 2]
                t = (lin.weight if name.endswith("weight") else lin.bias).detach().float().cpu()
            elif name == "image_newline":
                t = self.ref.newline.detach().float().cpu()
            else:
                n = name[len("language_model."):]
                if ".block_sparse_moe.experts." in n and n.replace("block_sparse_moe.", "mlp.") not in lsd:
                    l, e, wn = int(n.split(".")[2]), int(n.split(".")[5]), n.split(".")[6]
                    gu, dn = lsd[f"model.layers.{l}.mlp.experts.gate_up_proj"], lsd[f"model.layers.{l}.mlp.experts.down_proj"]
                    if wn == "w2":
                        t = dn[e] if tuple(dn.shape[1:]) == a.shape else dn[e].T
                    else:
                        g = gu[e] if gu.shape[1] == 2 * dm.I else gu[e].T
                        t = g[:dm.I] if wn == "w1" else g[dm.I:]
                else:
                    t = lsd[n.replace("block_sparse_moe.", "mlp.")] if n.replace("block_sparse_moe.", "mlp.") in lsd else lsd[n]
            t = t.contiguous().numpy()
            assert t.shape == a.shape, (name, t.shape, a.shape)
            out[name] = t.astype(np.float32)
        return out


def train(args, torch, device):
    init_dir = args.init or os.path.join(args.out, "init")
    if not args.init:
        dm.write_model_dir(init_dir, dm.init_weights())
    m = Model(init_dir, torch, device)
    params = m.params()
    print(f"{sum(p.numel() for p in params)} trainable parameters", flush=True)
    vit = {id(p) for p in m.ref.vit.parameters()}
    groups = []  # the ViT gets --vit-lr-mult times the rate: reading needs new visual features
    for in_vit in (True, False):
        mult = args.vit_lr_mult if in_vit else 1.0
        ps = [p for p in params if (id(p) in vit) == in_vit]
        groups += [{"params": [p for p in ps if p.dim() >= 2], "weight_decay": 0.05, "lr_mult": mult},
                   {"params": [p for p in ps if p.dim() < 2], "weight_decay": 0.0, "lr_mult": mult}]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")
    loader = torch.utils.data.DataLoader(stream(args.batch_images, os.path.join(init_dir, "tokenizer.json")),
                                         batch_size=None, num_workers=args.workers, pin_memory=device.type == "cuda",
                                         prefetch_factor=4 if args.workers else None,
                                         persistent_workers=False)
    m.modules.train()
    t0, step, ema = time.time(), 0, None
    use_amp = device.type == "cuda"
    for batch in loader:
        if step == 0:
            t0 = time.time()  # the clock starts once the workers deliver
        frac = (time.time() - t0) / args.seconds
        if frac >= 1 or (args.steps and step >= args.steps):
            break
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1))))
        for gp in opt.param_groups:
            gp["lr"] = lr * gp["lr_mult"]
        ids = batch["ids"].to(device, non_blocking=True)
        tgt = batch["tgt"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            packed = m.images(batch["tiles"], batch["geoms"])
            h = m.hidden(m.embed(ids, packed, batch["seq_img"]))
            sel = tgt[:, 1:]
            logits = m.ref.lm.lm_head(h[:, :-1][sel]).float()
        loss = torch.nn.functional.cross_entropy(logits, ids[:, 1:][sel])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        lv = float(loss.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        if step % 25 == 0 or step <= 3:
            print(f"step {step} t {time.time() - t0:.0f}s loss {lv:.4f} ema {ema:.4f} gnorm {float(gn):.2f} lr {lr:.2e} "
                  f"seqs {ids.shape[0]} len {ids.shape[1]} tiles {batch['tiles'].shape[0]}", flush=True)
    print(f"trained {step} steps in {time.time() - t0:.0f}s; final loss ema {ema:.4f}", flush=True)
    model_dir = os.path.join(args.out, "model")
    dm.write_model_dir(model_dir, m.export())
    return model_dir


def evaluate(args, torch, device, model_dir):
    """Greedy answers of the saved model (reloaded through the reference), fp32, TF32 off."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    m = Model(model_dir, torch, device)
    m.modules.eval()
    prompter = dm.Prompter(os.path.join(model_dir, "tokenizer.json"))
    jobs = []  # (image index, task index, type, expected, prompt ids)
    packed = {}
    t0 = time.time()
    with torch.no_grad():
        for k in range(args.eval_n):
            img, cap, qa = gen.sample(gen.EVAL_SEED, k)
            u8, W, H, cols, rows = dm.preprocess_u8(img)
            packed[k] = m.images(torch.from_numpy(u8), [(W, H, cols, rows)])[0]
            for j, (t, q, a) in enumerate(dm.eval_tasks(cap, qa)):
                jobs.append((k, j, t, a, prompter.first_turn(q, packed[k].shape[0])))
        jobs.sort(key=lambda j: len(j[4]))
        results = []
        for b0 in range(0, len(jobs), args.eval_batch):
            chunk = jobs[b0:b0 + args.eval_batch]
            lens = [len(j[4]) for j in chunk]
            Lmax = max(lens) + args.max_new
            ids = torch.zeros(len(chunk), Lmax, dtype=torch.long, device=device)
            for r, j in enumerate(chunk):
                ids[r, :lens[r]] = torch.tensor(j[4], device=device)
            emb = m.embed(ids, packed, [j[0] for j in chunk])
            outs = [[] for _ in chunk]
            done = [False] * len(chunk)
            cur = list(lens)
            for _ in range(args.max_new):
                h = m.hidden(emb[:, :max(cur)])
                last = h[torch.arange(len(chunk), device=device), torch.tensor(cur, device=device) - 1]
                nxt = m.ref.lm.lm_head(last).argmax(-1).tolist()
                for r, t in enumerate(nxt):
                    if done[r]:
                        continue
                    outs[r].append(t)
                    done[r] = t == prompter.eos
                    emb[r, cur[r]] = m.ref.lm.model.embed_tokens.weight[t]
                    cur[r] += 1
                if all(done):
                    break
            for r, j in enumerate(chunk):
                results.append({"image": j[0], "task": j[1], "type": j[2], "expected": j[3], "ids": outs[r],
                                "text": prompter.decode(outs[r])})
    results.sort(key=lambda r: (r["image"], r["task"]))
    with open(os.path.join(args.out, "greedy.jsonl"), "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    by = {}
    for r in results:
        by.setdefault(r["type"], []).append(r["text"].strip() == r["expected"])
    print(f"reference greedy on {args.eval_n} held-out images in {time.time() - t0:.0f}s:", flush=True)
    for t, v in sorted(by.items()):
        print(f"  {t}: {100 * sum(v) / len(v):.1f}% of {len(v)}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seconds", type=float, default=330)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--batch-images", type=int, default=24)
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--lr", type=float, default=8e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--vit-lr-mult", type=float, default=1.0)
    ap.add_argument("--eval-n", type=int, default=300)
    ap.add_argument("--eval-batch", type=int, default=48)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--init", help="start from this model directory instead of the seeded init")
    ap.add_argument("--model", help="skip training: evaluate this model directory")
    args = ap.parse_args()
    import torch
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    os.makedirs(args.out, exist_ok=True)
    model_dir = args.model or train(args, torch, device)
    if args.eval_n:
        evaluate(args, torch, device, model_dir)


if __name__ == "__main__":
    main()
