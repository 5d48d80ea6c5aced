#!/bin/sh
# minimax-vl logits: exit codes and the .npy shape. $1: the binary; $2: source dir; $3: scratch dir.
bin=$1 src=$2 out=$3
mkdir -p "$out" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
"$bin" logits -m "$src/testdata/tiny-random" --ids 1,2,3 -o "$out/l.npy" || fail "run with --ids"
# .npy v1: 10-byte preamble + header padded to 64, then 3 x 1536 float32
size=$(wc -c < "$out/l.npy")
[ "$size" -eq $((128 + 3 * 1536 * 4)) ] || fail "size $size"
head -c 128 "$out/l.npy" | grep -q "'shape': (3, 1536)" || fail "shape"
"$bin" logits -m "$src/testdata/tiny-random" --image "$src/testdata/goldens/img_200x150.png" --ids 7,1535,9 \
    -o "$out/i.npy" || fail "image run"
head -c 128 "$out/i.npy" | grep -q "'shape': (1028, 1536)" || fail "image placeholder not expanded to 1026 tokens"
"$bin" logits --ids 1,x -o "$out/x.npy"; [ $? -eq 2 ] || fail "bad --ids should be a usage error"
"$bin" logits --bogus; [ $? -eq 2 ] || fail "unknown flag should be a usage error"
"$bin" logits -m "$src/testdata/tiny-random" --ids 1,99999 -o "$out/x.npy"; [ $? -eq 1 ] || fail "out-of-vocabulary id"
"$bin" logits -m "$src/testdata/tiny-random" -p hi -o "$out/x.npy" || fail "chat prompt through the bundled tokenizer"
"$bin" logits -m "$src/testdata/tiny-random" --raw -p "a<image>b" -o "$out/x.npy"; [ $? -eq 1 ] || fail "placeholder without an image"
"$bin" logits -h > /dev/null || fail "-h"
echo ok
