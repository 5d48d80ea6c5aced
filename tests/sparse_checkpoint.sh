#!/bin/sh
# Writes the full-size sparse checkpoint (414 shards of holes, released key
# manifest) and checks what `minimax-vl info` reports for it against the
# figures of vision.md §1.4, §2 and decoder.md §1.2.
set -eu
bin=$1 script=$2 dir=$3
rm -rf "$dir"
python3 "$script" "$dir"
out=$("$bin" info -m "$dir" -v 2>"$dir.stderr")
cat "$dir.stderr" >&2
status=0
check() {
  if printf '%s\n' "$out" | grep -qF -- "$1"; then echo "ok: $1"; else echo "MISSING: $1"; status=1; fi
}
check "414 shards, 8637 tensors"
check "vision:     303,505,408 (303.51M)"
check "projector:  44,052,480 (44.05M)"
check "text:       456,089,655,296 (456.09B)"
check "without embedding and lm_head): 45,944,920,064 (45.94B)"
check "70 lightning, 10 softmax"
[ $status -eq 0 ] || printf '%s\n' "$out"
rm -rf "$dir" "$dir.stderr"
exit $status
