#!/usr/bin/env bash
# A/B timing of the CUDA ViT: the working tree against a reference commit, both built on the GPU machine and run
# alternately in one call (machines of one kind differ by a few percent from call to call, so only same-run
# comparisons count: BENCHMARKS.md).
#   here:            scripts/device-ab.sh prepare [COMMIT]
#                    exports COMMIT (default HEAD) to .device/ref (git-ignored, carried; its testdata left out)
#                    and fetches the Debian packages the device lacks (scripts/device-debs.sh)
#   the GPU machine: scripts/device-ab.sh run [ROUNDS] [TILES...]   (device tool, carry [".device"])
#                    builds both trees, runs the new tree's sm_90a GEMM and attention tests, then ROUNDS
#                    (default 3) alternating rounds of `bench_vit_cuda bench` at TILES (default 64 19 8) and of
#                    the GEMM shapes alone; raw output and a summary go to $OUT (or .device/ab-out).
# Exit status: 0 done, 1 a build or a test failed, 2 usage, 77 no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,12p' "$0" >&2
    exit 2
}

prepare() {
    local commit=${1:-HEAD}
    git rev-parse --verify -q "$commit^{commit}" >/dev/null || { echo "device-ab: no commit $commit" >&2; exit 2; }
    rm -rf .device/ref
    mkdir -p .device/ref
    git archive "$commit" | tar -x -C .device/ref --exclude=testdata
    mkdir -p .device/ref/testdata
    git rev-parse "$commit" >.device/ref/COMMIT
    [ -d .device/debs ] || bash scripts/device-debs.sh
    echo "device-ab: .device/ref holds $(cut -c1-12 .device/ref/COMMIT); run with carry [\".device\"]" >&2
}

# Builds the targets of one tree in $1/build-ab.
build() {
    cmake -S "$1" -B "$1/build-ab" -DMVL_CUDA=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$1/build-ab" -j"$(nproc)" --target bench_vit_cuda test_gpu_gemm_sm90 test_gpu_vit_attn >/dev/null
}

run() {
    local rounds=${1:-3}
    shift || true
    local tiles=("$@")
    [ ${#tiles[@]} -gt 0 ] || tiles=(64 19 8)
    [[ $rounds =~ ^[1-9][0-9]?$ ]] || usage
    [ -f .device/ref/COMMIT ] || { echo "device-ab: no .device/ref: run 'prepare' here first" >&2; exit 2; }
    local out=${OUT:-.device/ab-out}
    mkdir -p "$out"
    # shellcheck disable=SC1091
    source scripts/device-env.sh
    build . || exit 1
    build .device/ref || exit 1
    local rc=0
    build-ab/tests/test_gpu_gemm_sm90 >"$out/test_gemm.txt" 2>&1 || rc=$?
    [ $rc -eq 0 ] && { build-ab/tests/test_gpu_vit_attn --no-timing >"$out/test_attn.txt" 2>&1 || rc=$?; }
    if [ $rc -eq 77 ]; then echo "device-ab: no GPU" >&2; exit 77; fi
    if [ $rc -ne 0 ]; then echo "device-ab: the new tree's GPU tests failed (see $out/test_*.txt)" >&2; exit 1; fi
    python3 tests/reference/vit_parity_bench.py --write-only --work /tmp/ab-vit >/dev/null
    local r b
    for r in $(seq "$rounds"); do
        for b in ref new; do
            local dir=.; [ $b = ref ] && dir=.device/ref
            echo "== $b round $r"
            "$dir/build-ab/tests/bench_vit_cuda" bench /tmp/ab-vit/model "${tiles[@]}"
            for t in "${tiles[@]}"; do "$dir/build-ab/tests/test_gpu_gemm_sm90" bench "$t"; done
        done
    done >"$out/ab.txt"
    # summary: the ViT's ms per tile count, min-max over the rounds, ref against new
    python3 - "$out/ab.txt" "$(cat .device/ref/COMMIT)" <<'EOF' | tee "$out/summary.txt"
import collections, re, sys
t = collections.defaultdict(list)
who = None
for line in open(sys.argv[1]):
    m = re.match(r"== (\w+) round", line)
    if m:
        who = m.group(1)
    m = re.match(r"vit tiles=(\d+) ms=([\d.]+)", line)
    if m:
        t[(who, int(m.group(1)))].append(float(m.group(2)))
print("ViT ms per forward, min-max over rounds; ref = %s" % sys.argv[2][:12])
print("| tiles | ref | new | new / ref (medians) |\n|---|---|---|---|")
for n in sorted({k[1] for k in t}, reverse=True):
    r, w = sorted(t[("ref", n)]), sorted(t[("new", n)])
    print("| %d | %.2f-%.2f | %.2f-%.2f | %.3f |" % (n, r[0], r[-1], w[0], w[-1], w[len(w) // 2] / r[len(r) // 2]))
EOF
}

case "${1:-}" in
prepare) shift; prepare "$@" ;;
run) shift; run "$@" ;;
*) usage ;;
esac
