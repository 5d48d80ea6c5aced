#!/bin/sh
# The command line's contract (README "Exit codes"): -h exits 0 on stdout,
# unknown flags and missing values exit 2 with the usage line on stderr,
# failures exit 1 with a message naming the file, answers go to stdout only.
set -u
bin=$1
fails=0 passes=0
expect() { # expect CODE STREAM PATTERN -- ARGS...
  code=$1 stream=$2 pat=$3
  shift 4
  "$bin" "$@" >/tmp/mvl-cli-out.$$ 2>/tmp/mvl-cli-err.$$
  got=$?
  f=/tmp/mvl-cli-$stream.$$
  if [ "$got" -eq "$code" ] && grep -q -- "$pat" "$f"; then
    passes=$((passes + 1))
  else
    fails=$((fails + 1))
    echo "FAIL: minimax-vl $* -> exit $got (want $code), $stream lacks '$pat'"
    sed 's/^/  out: /' /tmp/mvl-cli-out.$$; sed 's/^/  err: /' /tmp/mvl-cli-err.$$
  fi
}
expect 2 err "usage: minimax-vl COMMAND" --
expect 0 out "commands:" -- -h
expect 2 err "unknown command 'frobnicate'" -- frobnicate
expect 0 out "usage: minimax-vl info" -- info -h
expect 2 err "unknown option '--bogus'" -- info --bogus
expect 2 err "usage: minimax-vl info" -- info --bogus
expect 2 err "needs a value" -- info -m
expect 2 err "unexpected argument 'x'" -- info x
expect 1 err "/nonexistent/config.json: cannot open" -- info -m /nonexistent
expect 0 out "7 lightning, 1 softmax" -- info
expect 0 out "parameters:" -- info -v   # stdout still has the answer...
expect 0 err "opened .* in" -- info -v   # ...and the timing goes to stderr
rm -f /tmp/mvl-cli-out.$$ /tmp/mvl-cli-err.$$
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
