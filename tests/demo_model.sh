#!/bin/sh
# The bundled demo model answers about testdata/demo.png what the data
# generator says is true of it (scripts/demo/gen.py OUT --seed 777 --n 12,
# image 7; the labels below are the generator's, not the model's).
set -u
bin=$1 src=$2
m=$src/testdata/demo-model img=$src/testdata/demo.png
fails=0 passes=0
check() { # check WANT ARGS...
  want=$1
  shift
  got=$("$bin" "$@" 2>/dev/null)
  if [ "$got" = "$want" ]; then passes=$((passes + 1)); else fails=$((fails + 1)); echo "FAIL: $* -> '$got', want '$want'"; fi
}
check "three purple triangles." caption -m "$m" "$img"
check "purple" ask -m "$m" "$img" -p "What colour is the triangle?"
check "triangle" ask -m "$m" "$img" -p "What shape is in the image?"
check "3" ask -m "$m" "$img" -p "How many triangles are there?"
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
