#!/usr/bin/env python3
"""minimax-vl chat, end to end on the bundled tiny model.

Through a pseudo-terminal (stdin and stdout a tty, as a person at a
keyboard): two turns, /image between them, /quit. -v reports per turn the
tokens actually run; a follow-up turn must run only its own tokens on the
kept state (the image's tokens plus a few for its text), and the sequence
must grow by exactly that. Then scripted input (a pipe) with --json: one
object per turn, /clear starting over, a bad /image reported while the
conversation goes on. Usage: chat_cli.py BIN SOURCE_DIR"""
import json
import os
import pty
import re
import select
import subprocess
import sys
import time

BIN, SRC = sys.argv[1], sys.argv[2]
IMG = os.path.join(SRC, "testdata", "images", "rgb_14x14.png")
IMG2 = os.path.join(SRC, "testdata", "images", "rgb_1x1.png")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def turns(log):
    """(turn, new tokens run, generated, sequence length) per -v line."""
    return [tuple(map(int, m)) for m in
            re.findall(r"turn (\d+): (\d+) new tokens run, (\d+) generated .*?; sequence (\d+) tokens", log)]


# 1. Interactive, through a pty.
master, slave = pty.openpty()
proc = subprocess.Popen([BIN, "chat", "-n", "4", "-v", "--image", IMG], stdin=slave, stdout=slave,
                        stderr=subprocess.PIPE, close_fds=True)
os.close(slave)
script = ["Hello, what do you see?", f"/image {IMG2}", "And in this one?", "/quit"]
shown = b""
deadline = time.time() + 120
for line in script:
    os.write(master, line.encode() + b"\n")
# Read what the chat shows on the terminal until it exits.
while time.time() < deadline:
    r, _, _ = select.select([master], [], [], 0.2)
    if r:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        shown += chunk
    elif proc.poll() is not None:
        break
err = proc.stderr.read().decode("utf-8", "replace")
proc.wait(timeout=30)
os.close(master)
check(proc.returncode == 0, f"pty chat: exit {proc.returncode}: {err}")
check("/image PATH" in err and "> " in err, "pty chat: no banner or prompt on stderr")
t = turns(err)
check(len(t) == 2, f"pty chat: {len(t)} turns reported, want 2: {err}")
m = re.search(r"rgb_1x1.png \((\d+) visual tokens\)", err)
check(m is not None, "pty chat: /image not acknowledged")
if len(t) == 2 and m:
    (t1, new1, gen1, seq1), (t2, new2, gen2, seq2) = t
    image2 = int(m.group(1))
    check(t1 == 1 and t2 == 2, f"turn numbers {t1}, {t2}")
    check(new1 == seq1 - (gen1 - 1), f"turn 1: {new1} run but sequence {seq1}")
    # The follow-up runs its image, its text and the template's markers, nothing earlier.
    check(image2 < new2 < image2 + 40, f"turn 2 ran {new2} tokens for a {image2}-token image and a short text")
    check(seq2 == seq1 + new2 + gen2 - 1, f"turn 2: sequence {seq1} + {new2} run != {seq2}: state not reused")
check(shown.count(b"\n") >= 2, f"pty chat: answers missing on the terminal: {shown!r}")

# 2. Scripted (stdin a pipe), --json.
lines = ["first question", "/image /nonexistent/x.png", "/bogus", "second question", "/clear", "again"]
p = subprocess.run([BIN, "chat", "-n", "3", "--json", "-v", "--image", IMG], input="\n".join(lines) + "\n",
                   capture_output=True, text=True, timeout=120)
check(p.returncode == 0, f"scripted chat: exit {p.returncode}: {p.stderr}")
objs = [json.loads(l) for l in p.stdout.splitlines()]
check([o["turn"] for o in objs] == [1, 2, 1], f"scripted chat: turns {[o.get('turn') for o in objs]}")
check("/nonexistent/x.png" in p.stderr and "unknown command" in p.stderr, "bad /image or command not reported")
if len(objs) == 3:
    check(objs[0]["new_tokens"] > 500 and objs[1]["new_tokens"] < 40, f"new tokens {objs[0]}, {objs[1]}")
    check(objs[2]["new_tokens"] < 40 and all(isinstance(o["text"], str) for o in objs), f"after /clear: {objs[2]}")
    t = turns(p.stderr)
    check(len(t) == 3 and t[2][3] == t[2][1] + t[2][2] - 1, f"/clear did not start a fresh sequence: {t}")

# 3. Usage.
for args in (["--bogus"], ["-n"], ["--temp", "hot"]):
    p = subprocess.run([BIN, "chat", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    check(p.returncode == 2 and "usage: minimax-vl chat" in p.stderr, f"chat {args}: exit {p.returncode}")
p = subprocess.run([BIN, "chat", "-h"], capture_output=True, text=True)
check(p.returncode == 0 and "/image PATH" in p.stdout, "chat -h")

print(f"{len(failures)} failed")
sys.exit(1 if failures else 0)
