#!/usr/bin/env python3
"""caption, ask and chat at temperature 0 on the bundled tiny model give the
greedy ids of the independent reference (testdata/goldens/cli.json, made by
tests/reference/make_cli_goldens.py with transformers and HF tokenizers).
Usage: cli_goldens.py MINIMAX_VL SOURCE_DIR. Exit 77 when the golden file is absent."""
import json
import os
import subprocess
import sys

binary, src = sys.argv[1], sys.argv[2]
path = os.path.join(src, "testdata", "goldens", "cli.json")
if not os.path.exists(path):
    print("skipped: no", path)
    sys.exit(77)
g = json.load(open(path))
model, image = os.path.join(src, g["model"]), os.path.join(src, g["image"])
fails = passes = 0
for case in g["cases"]:
    n = str(case["max_tokens"])
    if case["command"] == "chat":
        r = subprocess.run([binary, "chat", "-m", model, "--image", image, "-n", n, "--json"],
                           input="\n".join(case["turns"]) + "\n", capture_output=True, text=True)
        got = [json.loads(line)["ids"] for line in r.stdout.splitlines()]
    else:
        args = [binary, case["command"], "-m", model, image, "-n", n, "--json"]
        if case["command"] == "ask":
            args += ["-p", case["turns"][0]]
        r = subprocess.run(args, capture_output=True, text=True)
        got = [json.loads(r.stdout)["ids"]] if r.returncode == 0 else None
    if r.returncode == 0 and got == case["ids"]:
        passes += 1
        print(f"ok: {case['name']}: {sum(len(x) for x in got)} ids equal the reference's")
    else:
        fails += 1
        print(f"FAIL: {case['name']}: exit {r.returncode}\n  want {case['ids']}\n  got  {got}\n  stderr: {r.stderr[-500:]}")
print(f"{passes} passed, {fails} failed")
sys.exit(1 if fails else 0)
