#!/usr/bin/env python3
"""Board power and SM clock while the full-size ViT runs: ours (bench_vit_cuda) against transformers'
CLIPVisionModel in bf16 with SDPA (eager), same weights, same GPU, one run.

Each side runs back to back for a few seconds while nvidia-smi samples power.draw and clocks.sm every 50 ms.
The median of the middle samples is reported with the time per forward, and power x time gives the energy per
forward. The question it answers: do both run at the board's power limit? If they do, the clock is set by the
cap, and only less energy per forward can make a forward faster.

Usage: vit_power.py --bin build/tests/bench_vit_cuda --work /tmp/vb [--tiles 64] [--seconds 6] [--out DIR]
(--work: a directory from vit_parity_bench.py --write-only, or one to write it into). Needs torch,
transformers, numpy and nvidia-smi (the GPU machine has them).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vit_parity_bench import S, hf_model, write_model  # noqa: E402


def sampled(run):
    """Runs run() while nvidia-smi samples; returns (run's result, [(watts, mhz)] of the middle 60%)."""
    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=power.draw,clocks.sm", "--format=csv,noheader,nounits",
                            "-lms", "50"], stdout=subprocess.PIPE, text=True)
    try:
        result = run()
    finally:
        smi.terminate()
    rows = []
    for line in smi.communicate()[0].splitlines():
        try:
            w, mhz = (float(x) for x in line.split(","))
            rows.append((w, mhz))
        except ValueError:
            pass
    if len(rows) < 10:
        raise SystemExit("vit_power: nvidia-smi gave %d samples" % len(rows))
    n = len(rows)
    return result, rows[n // 5:n - n // 5]


def summary(name, ms, rows):
    watts = statistics.median(r[0] for r in rows)
    mhz = statistics.median(r[1] for r in rows)
    return {"who": name, "ms_per_forward": ms, "watts": watts, "sm_mhz": mhz, "joules_per_forward": watts * ms / 1e3,
            "samples": len(rows)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", default="/tmp/vitbench")
    ap.add_argument("--tiles", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--out", default=".")
    a = ap.parse_args()
    mdir, vis, _ = write_model(a.work)

    # ours: bench_vit_cuda's timing loop (20 forwards per argument), repeated to fill the time
    reps = max(2, int(a.seconds * 1e3 / (0.75 * a.tiles) / 20))

    def ours():
        r = subprocess.run([a.bin, "bench", mdir] + [str(a.tiles)] * reps, check=True, capture_output=True, text=True)
        ms = [float(x.split("ms=")[1].split()[0]) for x in r.stdout.splitlines() if x.startswith("vit ")]
        return statistics.median(ms)

    ms, rows = sampled(ours)
    report = [summary("ours", ms, rows)]

    import torch
    sd = {k: torch.from_numpy(v) for k, v in vis.items()}
    m16 = hf_model(sd, torch.bfloat16, "sdpa", "cuda")
    x = torch.randn(a.tiles, 3, S, S, device="cuda").to(torch.bfloat16)

    def eager():
        with torch.inference_mode():
            for _ in range(3):
                m16(pixel_values=x)
            torch.cuda.synchronize()
            n, t0 = 0, time.time()
            while time.time() - t0 < a.seconds:
                m16(pixel_values=x)
                n += 1
                if n % 4 == 0:
                    torch.cuda.synchronize()
            torch.cuda.synchronize()
            return (time.time() - t0) * 1e3 / n

    ms, rows = sampled(eager)
    report.append(summary("eager", ms, rows))
    print("| %d tiles | ms per forward | board W (median) | SM MHz (median) | J per forward |" % a.tiles)
    print("|---|---|---|---|---|")
    for r in report:
        print("| %s | %.2f | %.0f | %.0f | %.2f |" % (r["who"], r["ms_per_forward"], r["watts"], r["sm_mhz"],
                                                    r["joules_per_forward"]))
    json.dump(report, open(os.path.join(a.out, "vit_power.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
