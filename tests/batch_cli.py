#!/usr/bin/env python3
"""minimax-vl batch, end to end on the bundled tiny model: a folder mixing good
and broken files (error records, exit 3), JSONL requests (ids, duplicates,
bad lines), kill -9 then --resume (one whole record per input), SIGINT (exit
130, whole records), usage errors (exit 2). Every output line is parsed with
the json module. Usage: batch_cli.py BIN SOURCE_DIR TMP_DIR"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

BIN, SRC, TMP = sys.argv[1], sys.argv[2], os.path.join(sys.argv[3], f"mvl-batch.{os.getpid()}")
IMAGES = os.path.join(SRC, "testdata", "images")
SMALL = os.path.join(IMAGES, "rgb_14x14.png")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(*args, **kw):
    return subprocess.run([BIN, "batch", *args], capture_output=True, text=True, **kw)


def records(path):
    """Every line of a JSONL output, parsed; a line that does not parse fails."""
    with open(path, "rb") as f:
        data = f.read()
    check(data == b"" or data.endswith(b"\n"), f"{path}: last line is not whole")
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def wait_lines(path, n, proc, timeout=120):
    t = time.time()
    while time.time() - t < timeout and proc.poll() is None:
        if os.path.exists(path) and open(path, "rb").read().count(b"\n") >= n:
            return True
        time.sleep(0.02)
    return False


shutil.rmtree(TMP, ignore_errors=True)
os.makedirs(TMP)

# 1. A folder mixing good images and bad files (found by content or by name).
mixed = os.path.join(TMP, "mixed")
os.makedirs(os.path.join(mixed, "sub"))
shutil.copy(SMALL, os.path.join(mixed, "good.png"))
shutil.copy(os.path.join(IMAGES, "jpeg_333x251_422.jpg"), os.path.join(mixed, "sub", "photo.bin"))  # by content
bad = ["empty.jpg", "jpeg_truncated_data.jpg", "png_bad_zlib.png", "png_huge_100000x100000.png", "text_named.jpg"]
for b in bad:
    shutil.copy(os.path.join(IMAGES, "bad", b), os.path.join(mixed, b))
with open(os.path.join(mixed, "notes.txt"), "w") as f:
    f.write("not an image, not named as one\n")
out = os.path.join(TMP, "mixed.jsonl")
p = run(mixed, "-o", out, "-n", "4", "--json")
check(p.returncode == 3, f"mixed folder: exit {p.returncode}, want 3 (partial); stderr {p.stderr}")
recs = records(out)
by_id = {r["id"]: r for r in recs}
check(len(recs) == 7 and len(by_id) == 7, f"mixed folder: {len(recs)} records, want 7: {sorted(by_id)}")
for good in ("good.png", "sub/photo.bin"):
    r = by_id.get(good, {})
    check("error" not in r and isinstance(r.get("text"), str) and 1 <= r.get("tokens", 0) <= 4
          and r.get("prompt") == "Describe this image." and r.get("ms", -1) >= 0, f"good record {good}: {r}")
for b in bad:
    r = by_id.get(b, {})
    check(isinstance(r.get("error"), str) and b in r["error"] and "text" not in r, f"error record {b}: {r}")
check("100000x100000" in by_id.get("png_huge_100000x100000.png", {}).get("error", ""), "huge PNG refused from its header")
summary = json.loads(p.stdout)
check(summary["succeeded"] == 2 and summary["failed"] == 5 and summary["inputs"] == 7, f"--json summary {summary}")
check(os.path.isfile(out) and run(mixed, "-o", out, "-n", "4").returncode == 1, "an existing OUT is not overwritten silently")

# 2. JSONL requests: numeric and string ids, several images, bad lines, duplicates.
req = os.path.join(TMP, "req.jsonl")
with open(req, "w") as f:
    f.write(json.dumps({"id": 7, "image": SMALL, "prompt": "What is in the picture?"}) + "\n")
    f.write(json.dumps({"id": "two", "images": [SMALL, SMALL]}) + "\n")
    f.write(json.dumps({"id": 7, "image": SMALL}) + "\n")  # duplicate id
    f.write(json.dumps({"image": SMALL}) + "\n")  # no id
    f.write("{not json\n")
    f.write(json.dumps({"id": "gone", "image": os.path.join(TMP, "missing.png")}) + "\n")
out = os.path.join(TMP, "req.out.jsonl")
p = run(req, "-o", out, "-n", "3", "--workers", "3")
check(p.returncode == 3, f"jsonl: exit {p.returncode}, want 3; {p.stderr}")
recs = records(out)
check(len(recs) == 6, f"jsonl: {len(recs)} records, want 6")
if len(recs) == 6:
    check(recs[0]["id"] == 7 and recs[0]["prompt"] == "What is in the picture?" and "text" in recs[0], f"rec 0 {recs[0]}")
    check(recs[1]["id"] == "two" and recs[1]["file"] == [SMALL, SMALL] and "text" in recs[1], f"rec 1 {recs[1]}")
    check(recs[1]["prompt_tokens"] > 2 * recs[0]["prompt_tokens"] - 100, "two images: both in the prompt")
    check("duplicate" in recs[2].get("error", "") and recs[2]["line"] == 3, f"duplicate id: {recs[2]}")
    check(recs[3]["id"] is None and "id" in recs[3].get("error", ""), f"missing id: {recs[3]}")
    check(recs[4]["id"] is None and "JSON" in recs[4].get("error", ""), f"bad line: {recs[4]}")
    check("missing.png" in recs[5].get("error", ""), f"missing file: {recs[5]}")
# --resume over a complete output runs nothing and adds nothing.
p = run(req, "-o", out, "-n", "3", "--resume")
check(p.returncode == 0 and len(records(out)) == 6, f"resume of a finished batch: exit {p.returncode}, {len(records(out))} records")

# 3. kill -9 in the middle, then --resume: exactly one whole record per input.
many = os.path.join(TMP, "many")
os.makedirs(many)
for i in range(30):
    shutil.copy(SMALL, os.path.join(many, f"img{i:02d}.png"))
out = os.path.join(TMP, "many.jsonl")
proc = subprocess.Popen([BIN, "batch", many, "-o", out, "-n", "4"], stderr=subprocess.DEVNULL)
started = wait_lines(out, 2, proc)
proc.kill()
proc.wait()
check(started, "kill -9 test: no record appeared")
before = records(out)
check(len(before) < 30, f"kill -9 came too late to test anything ({len(before)} records)")
with open(out, "ab") as f:
    f.write(b'{"id":"img29.png","file":"torn')  # what a crash in the middle of a line would leave
p = run(many, "-o", out, "-n", "4", "--resume")
check(p.returncode == 0, f"resume after kill -9: exit {p.returncode}: {p.stderr}")
check("torn" in p.stderr, "resume did not report the torn line")
after = records(out)
ids = [r["id"] for r in after]
check(len(ids) == 30 and sorted(set(ids)) == sorted(f"img{i:02d}.png" for i in range(30)),
      f"after resume: {len(ids)} records, {len(set(ids))} distinct ids")
check(all("text" in r for r in after), "after resume: every record succeeded")
check(after[:len(before)] == before, "resume changed the records written before the kill")

# 4. SIGINT: the record under way completes, exit 130, only whole records.
out = os.path.join(TMP, "int.jsonl")
proc = subprocess.Popen([BIN, "batch", many, "-o", out, "-n", "4"], stderr=subprocess.PIPE, text=True)
started = wait_lines(out, 1, proc)
proc.send_signal(signal.SIGINT)
_, err = proc.communicate(timeout=120)
check(started and proc.returncode == 130, f"SIGINT: exit {proc.returncode}, want 130; {err}")
recs = records(out)
check(0 < len(recs) < 30 and all("text" in r for r in recs), f"SIGINT: {len(recs)} records")
check("interrupted" in err, "SIGINT: the summary does not say interrupted")

# 5. Usage errors exit 2 with the usage line; -h exits 0.
for args, what in (([], "no INPUT"), ([many], "no -o"), ([many, "-o", out, "--bogus"], "unknown flag"),
                   ([many, "-o"], "missing value"), ([many, "-o", out, "--workers", "x"], "bad number")):
    p = run(*args)
    check(p.returncode == 2 and "usage: minimax-vl batch" in p.stderr and p.stdout == "", f"batch {what}: exit {p.returncode}")
p = run("-h")
check(p.returncode == 0 and "--resume" in p.stdout and "--log-file" in p.stdout, "batch -h")

# 6. --log-file gets the log lines too.
log = os.path.join(TMP, "log.txt")
p = run(mixed, "-o", os.path.join(TMP, "log.jsonl"), "-n", "2", "--log-file", log)
check(p.returncode == 3 and "succeeded" in open(log).read(), "--log-file lacks the summary line")

shutil.rmtree(TMP, ignore_errors=True)
print(f"{len(failures)} failed")
sys.exit(1 if failures else 0)
