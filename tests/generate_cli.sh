#!/bin/sh
# minimax-vl caption / ask on the bundled tiny model: stdout carries the
# answer only, --json is one valid object that agrees with the plain output,
# greedy runs repeat exactly, and bad input gives the documented exit codes.
set -u
bin=$1 src=$2 tmp=${3:-/tmp}/mvl-gen.$$
mkdir -p "$tmp"
img=$src/testdata/images/jpeg_640x480_progressive.jpg
fails=0 passes=0
ok() { passes=$((passes + 1)); }
bad() { fails=$((fails + 1)); echo "FAIL: $*"; }

"$bin" caption "$img" -n 12 >"$tmp/a.out" 2>"$tmp/a.err" && ok || bad "caption exit $?"
"$bin" caption "$img" -n 12 >"$tmp/b.out" 2>/dev/null
cmp -s "$tmp/a.out" "$tmp/b.out" && ok || bad "greedy caption differs between runs"
[ -s "$tmp/a.err" ] && bad "caption wrote to stderr without -v: $(cat "$tmp/a.err")" || ok
"$bin" ask "$img" -p "Describe this image." -n 12 >"$tmp/c.out" 2>/dev/null
cmp -s "$tmp/a.out" "$tmp/c.out" && ok || bad "ask with the caption prompt differs from caption"
"$bin" caption --image "$img" -n 12 --json -v >"$tmp/j.out" 2>"$tmp/j.err" && ok || bad "--json exit $?"
python3 - "$tmp/j.out" "$tmp/a.out" <<'PY' && ok || bad "--json output"
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
assert len(lines) == 1, lines
o = json.loads(lines[0])
assert set(o) >= {"text", "ids", "prompt_tokens", "generated_tokens", "stop", "timings_ms"}, o
assert o["generated_tokens"] == len(o["ids"]) <= 12 and o["prompt_tokens"] > 576, o
plain = open(sys.argv[2], encoding="utf-8").read()
assert plain == o["text"] + "\n", (plain, o["text"])
PY
grep -q "prompt tokens" "$tmp/j.err" && ok || bad "-v timings missing on stderr"
"$bin" caption "$img" -n 12 --temp 0.8 --seed 7 >"$tmp/s1.out" 2>/dev/null
"$bin" caption "$img" -n 12 --temp 0.8 --seed 7 >"$tmp/s2.out" 2>/dev/null
cmp -s "$tmp/s1.out" "$tmp/s2.out" && ok || bad "seeded sampling is not repeatable"

"$bin" caption >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "caption without IMAGE should exit 2"
"$bin" ask "$img" >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "ask without -p should exit 2"
"$bin" caption "$img" --device tpu >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "--device tpu should be refused"
# without a GPU (or CUDA) the model load fails, exit 1; with one it runs
"$bin" caption "$img" --device cuda >/dev/null 2>&1; rc=$?
[ $rc -eq 0 ] || [ $rc -eq 1 ] && ok || bad "--device cuda should run or fail at load (exit 1), got $rc"
"$bin" caption "$img" -n 0 >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "-n 0 should exit 2"
printf 'not an image' >"$tmp/x.jpg"
"$bin" caption "$tmp/x.jpg" >"$tmp/x.out" 2>"$tmp/x.err"; rc=$?
[ $rc -eq 1 ] && grep -q "x.jpg" "$tmp/x.err" && [ ! -s "$tmp/x.out" ] && ok || bad "bad image: exit $rc, $(cat "$tmp/x.err")"
rm -rf "$tmp"
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
