#!/usr/bin/env python3
"""Evaluates the demo model (issue 9) with the C engine on the CPU, greedy.

    eval.py [-m MODEL_DIR] [--bin build/minimax-vl] [--greedy GREEDY.jsonl] [--n 300]
            [--qa-per-image K] [--jobs 2]

Draws the held-out images (scripts/demo/gen.py, seed 9001, never used in
training) into a scratch directory, runs `minimax-vl caption` and
`minimax-vl ask -p QUESTION` (--json, -n 32, one thread each, --jobs at a
time) on each, and prints a markdown table: caption exact match, VQA accuracy
per question type, and the share of cases whose generated ids equal the
PyTorch reference's greedy ids (GREEDY.jsonl, written by scripts/demo/train.py
on the GPU machine with the same weights). Per image: the caption, then K of
the eval questions (scripts/demo/demo_model.py eval_tasks), taken in turn
so that every question type is covered; K = 0 asks them all.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_model as dm  # noqa: E402
import gen  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default=dm.MODEL_DIR)
    ap.add_argument("--bin", default=os.path.join(dm.ROOT, "build", "minimax-vl"))
    ap.add_argument("--greedy")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--qa-per-image", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    from PIL import Image
    ref = {}
    if a.greedy:
        for line in open(a.greedy):
            r = json.loads(line)
            ref[(r["image"], r["task"])] = r
    work = tempfile.mkdtemp(prefix="mvl-demo-eval-")
    jobs = []
    for k in range(a.n):
        img, cap, qa = gen.sample(gen.EVAL_SEED, k)
        path = os.path.join(work, f"{k:04d}.png")
        Image.fromarray(img, "RGB").save(path)
        tasks = dm.eval_tasks(cap, qa)
        pick = [0] + ([1 + (k + i) % (len(tasks) - 1) for i in range(a.qa_per_image)] if a.qa_per_image
                      else list(range(1, len(tasks))))
        for j in sorted(set(pick)):
            jobs.append((k, j, tasks[j], path))

    def run(job):
        k, j, (t, q, ans), path = job
        cmd = [a.bin, "caption" if t == "caption" else "ask", "-m", a.model, path, "--json", "-n", "32", "-t", "1"]
        if t != "caption":
            cmd += ["-p", q]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            return {"image": k, "task": j, "type": t, "expected": ans, "error": p.stderr.strip()}
        o = json.loads(p.stdout)
        return {"image": k, "task": j, "type": t, "expected": ans, "text": o["text"], "ids": o["ids"],
                "prefill_ms": o["timings_ms"]["prefill"]}

    with ThreadPoolExecutor(a.jobs) as ex:
        res = list(ex.map(run, jobs))
    errors = [r for r in res if "error" in r]
    by, agree, compared = {}, 0, 0
    for r in res:
        ok = "error" not in r and r["text"].strip() == r["expected"]
        by.setdefault(r["type"], []).append(ok)
        if (r["image"], r["task"]) in ref and "error" not in r:
            compared += 1
            agree += ref[(r["image"], r["task"])]["ids"] == r["ids"]
    pct = lambda v: f"{100 * sum(v) / len(v):.1f}% ({sum(v)}/{len(v)})"
    vqa = [x for t, v in by.items() if t in ("colour", "count", "shape", "text") for x in v]
    print(f"| measure | C engine, CPU, greedy ({a.n} held-out images, seed {gen.EVAL_SEED}) |")
    print("|---|---|")
    print(f"| caption exact match | {pct(by.get('caption', []))} |")
    for t in ("colour", "count", "shape", "text", "position"):
        if t in by:
            print(f"| VQA {t} | {pct(by[t])} |")
    if vqa:
        print(f"| VQA colour+count+shape+text | {pct(vqa)} |")
    if compared:
        print(f"| greedy ids equal to PyTorch's | {100 * agree / compared:.1f}% ({agree}/{compared}) |")
    if errors:
        print(f"| runs that failed | {len(errors)}: {errors[0]['error'][:200]} |")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f)


if __name__ == "__main__":
    main()
