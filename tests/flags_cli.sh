#!/bin/sh
# Issue 6: every subcommand takes -h (exit 0, usage on stdout) and --log-file;
# unknown flags and missing values exit 2 with the usage line on stderr; the
# commands that run the model share llama.cpp's flag vocabulary.
set -u
bin=$1 tmp=${2:-/tmp}/mvl-flags.$$
mkdir -p "$tmp"
fails=0 passes=0
ok() { passes=$((passes + 1)); }
bad() { fails=$((fails + 1)); echo "FAIL: $*"; }
for cmd in caption ask chat batch info preprocess logits tokenize; do
  "$bin" $cmd -h >"$tmp/h" 2>"$tmp/e"; rc=$?
  [ $rc -eq 0 ] && grep -q "usage: minimax-vl $cmd" "$tmp/h" && [ ! -s "$tmp/e" ] && ok || bad "$cmd -h: exit $rc"
  grep -q -- "--log-file" "$tmp/h" && ok || bad "$cmd -h lacks --log-file"
  "$bin" $cmd --bogus </dev/null >"$tmp/o" 2>"$tmp/e"; rc=$?
  [ $rc -eq 2 ] && grep -q "unknown option '--bogus'" "$tmp/e" && grep -q "usage: minimax-vl $cmd" "$tmp/e" && [ ! -s "$tmp/o" ] \
    && ok || bad "$cmd --bogus: exit $rc"
  "$bin" $cmd --log-file </dev/null >"$tmp/o" 2>"$tmp/e"; rc=$?
  [ $rc -eq 2 ] && grep -q "needs a value" "$tmp/e" && ok || bad "$cmd --log-file without a value: exit $rc"
done
for cmd in caption ask chat batch; do
  "$bin" $cmd -h >"$tmp/h" 2>/dev/null
  for f in "-m, --model" --image "-p, --prompt" --system "-n, --max-tokens" --temp --top-k --top-p --min-p --seed \
           "-t, --threads" --device --json --stream "-v, --verbose" --log-file --no-exif --strict-reference \
           --max-image-tokens --max-tiles; do
    grep -q -- "$f " "$tmp/h" && ok || bad "$cmd lacks $f"
  done
  "$bin" $cmd x -n </dev/null >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "$cmd -n without a value should exit 2"
  "$bin" $cmd x --temp warm </dev/null >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "$cmd --temp warm should exit 2"
  "$bin" $cmd x --max-tiles -1 -p q -o "$tmp/o.jsonl" </dev/null >/dev/null 2>&1; [ $? -eq 2 ] && ok || bad "$cmd --max-tiles -1 should exit 2"
done
# --log-file appends the stderr lines.
img=$(dirname "$0")/../testdata/images/rgb_14x14.png
"$bin" caption "$img" -n 2 -v --log-file "$tmp/log" >/dev/null 2>"$tmp/e"
"$bin" caption "$img" -n 2 -v --log-file "$tmp/log" >/dev/null 2>/dev/null
[ "$(grep -c 'prompt tokens' "$tmp/log")" -eq 2 ] && grep -q "prompt tokens" "$tmp/e" && ok || bad "--log-file: $(cat "$tmp/log")"
rm -rf "$tmp"
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
