#!/bin/sh
# The bundled demo model answers about testdata/demo.png what the data
# generator says is true of it (scripts/demo/gen.py OUT --seed 777 --n 12,
# image 7; the labels below are the generator's, not the model's).
# Usage: demo_model.sh BIN SRC [FLAG...]: the flags go to every command
# (demo_model_cuda.sh passes --device cuda).
set -u
bin=$1 src=$2
shift 2
extra="$*"
m=$src/testdata/demo-model img=$src/testdata/demo.png
log=$(mktemp) || exit 1
trap 'rm -f "$log"' EXIT
fails=0 passes=0
check() { # check WANT ARGS...
  want=$1
  shift
  # shellcheck disable=SC2086 # the extra flags are single words
  got=$("$bin" "$@" $extra 2>"$log")
  if [ "$got" = "$want" ]; then passes=$((passes + 1)); else
    fails=$((fails + 1))
    echo "FAIL: $* $extra -> '$got', want '$want'"
    cat "$log"
  fi
}
check "three purple triangles." caption -m "$m" "$img"
check "purple" ask -m "$m" "$img" -p "What colour is the triangle?"
check "triangle" ask -m "$m" "$img" -p "What shape is in the image?"
check "3" ask -m "$m" "$img" -p "How many triangles are there?"
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
