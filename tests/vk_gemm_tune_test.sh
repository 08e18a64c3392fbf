#!/usr/bin/env bash
# The Vulkan GEMM tuner (backends/vulkan/vk_gemm.c) on vulkan:0, through `twist bench gemm` with
# TWIST_TUNE=verbose (which prints every measurement and choice on stderr):
#   - the first call of a shape class times its candidates and writes the tuning cache; a second
#     process reuses the cached choice without timing anything;
#   - a damaged cache file and one written for another driver version are ignored with a note,
#     the class is timed again and the file rewritten;
#   - a candidate whose pipeline fails to build, or that computes a wrong result, is skipped
#     (test-only fault injection: TWIST_VK_TUNE_FAULT=<variant>:build|wrong);
#   - the GPU candidates (test-only TWIST_VK_TUNE_AS_GPU=1 on a CPU device) all run and agree;
#   - TWIST_TUNE=off times nothing and writes no cache.
# Usage: vk_gemm_tune_test.sh PATH/TO/twist
set -euo pipefail
twist=${1:?usage: vk_gemm_tune_test.sh PATH/TO/twist}
if ! command -v python3 >/dev/null 2>&1; then
    echo "skipped: python3 is needed"
    exit 77
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export TWIST_CACHE_DIR=$tmp/cache
unset TWIST_VK_TUNE_FAULT TWIST_VK_TUNE_AS_GPU TWIST_QUIET TWIST_TUNE

# A 256^3 GEMM: aligned rows, so texel and direct are both candidates on a CPU device, and the
# tiled variants on a GPU. Class key "gemm NN-m9-n9-k9-single-a4".
key="gemm NN-m9-n9-k9-single-a4"
bench() {
    TWIST_TUNE=${mode:-verbose} "$twist" bench gemm --device vulkan:0 --m 256 --n 256 --k 256 \
        --repeat 1 >"$tmp/out" 2>"$tmp/err"
}
if ! "$twist" devices 2>/dev/null | grep -q '^vulkan:0 '; then
    echo "skipped: no vulkan:0 here"
    exit 77
fi
timings() { grep -c "tune $key: .* GFLOP/s" "$tmp/err" || true; }
cache_file() { ls "$TWIST_CACHE_DIR"/tune-vulkan-*.txt 2>/dev/null | head -1; }

# 1. First call: candidates timed, the choice cached.
bench || fail "first bench failed: $(cat "$tmp/err")"
[[ $(timings) -ge 2 ]] ||
    fail "the first call timed $(timings) candidates, want 2 or more: $(cat "$tmp/err")"
file=$(cache_file)
[[ -n $file ]] || fail "no tuning cache written under $TWIST_CACHE_DIR"
chosen=$(grep "^$key " "$file" | awk '{print $3}')
[[ -n $chosen ]] || fail "the cache has no entry for $key: $(cat "$file")"
grep -q "chose $chosen" "$tmp/err" || fail "stderr does not say it chose $chosen"
echo "ok   first call timed $(timings) candidates and cached $chosen"

# 2. Second process: the cached choice, nothing timed.
bench || fail "second bench failed"
[[ $(timings) == 0 ]] || fail "the second call timed again: $(cat "$tmp/err")"
echo "ok   second process reused the cache"

# 3. A damaged file (one byte of an entry changed, checksum now wrong): ignored, rebuilt.
sed -i "s/^$key .*/$key xexel/" "$file"
bench || fail "bench with a damaged cache failed"
grep -q "ignoring the tuning cache.*checksum" "$tmp/err" ||
    fail "no note about the damaged cache: $(cat "$tmp/err")"
[[ $(timings) -ge 2 ]] || fail "the damaged cache was trusted"
grep -q "^$key " "$file" && ! grep -q xexel "$file" || fail "the cache was not rewritten"
echo "ok   damaged cache ignored with a note and rebuilt"

# 4. Another driver version (a valid file, checksum recomputed): ignored, rebuilt.
python3 - "$file" <<'EOF'
import sys
path = sys.argv[1]
lines = open(path, 'rb').read().split(b'\n')
body = [l for l in lines if l and not l.startswith(b'checksum ')]
body = [b'driver 0badd41e' if l.startswith(b'driver ') else l for l in body]
text = b'\n'.join(body) + b'\n'
h = 0xcbf29ce484222325
for byte in text:
    h = ((h ^ byte) * 0x100000001b3) & 0xffffffffffffffff
open(path, 'wb').write(text + b'checksum %016x\n' % h)
EOF
bench || fail "bench with another driver's cache failed"
grep -q "written for driver \"0badd41e\"" "$tmp/err" ||
    fail "no note about the other driver: $(cat "$tmp/err")"
[[ $(timings) -ge 2 ]] || fail "another driver's cache was trusted: $(cat "$tmp/err")"
grep -q "0badd41e" "$file" && fail "the cache still names the other driver"
echo "ok   another driver's cache ignored with a note and rebuilt"

# 5. Faults: the candidate the tuner chose, made to fail to build, then to compute wrongly.
for fault in build wrong; do
    rm -rf "$TWIST_CACHE_DIR"
    TWIST_VK_TUNE_FAULT=$chosen:$fault bench || fail "bench with a $fault fault failed"
    case $fault in
    build) why="its pipeline failed to build" ;;
    wrong) why="wrong result" ;;
    esac
    grep -q "$chosen skipped: $why" "$tmp/err" ||
        fail "$chosen with a $fault fault was not skipped: $(cat "$tmp/err")"
    grep -q "chose $chosen" "$tmp/err" && fail "the tuner chose the faulty $chosen"
    grep -q "^$key $chosen\$" "$(cache_file)" && fail "the faulty $chosen was cached"
    echo "ok   $chosen with a $fault fault skipped"
done

# 6. The GPU candidates (tiled variants; split-K ones for a skinny shape with a long k), tried on
#    this device through the test-only TWIST_VK_TUNE_AS_GPU=1: all of them run, agree with the
#    default and are timed; the choice is one of them.
for shape in "256 256 256 NN-m9-n9-k9" "64 48 4096 NN-m7-n6-k13"; do
    read -r m n k class <<<"$shape"
    rm -rf "$TWIST_CACHE_DIR"
    TWIST_VK_TUNE_AS_GPU=1 TWIST_TUNE=verbose "$twist" bench gemm --device vulkan:0 --m "$m" \
        --n "$n" --k "$k" --repeat 1 >"$tmp/out" 2>"$tmp/err" || fail "GPU-candidate bench failed"
    timed=$(grep -c "tune gemm $class-single-a4: t.* GFLOP/s" "$tmp/err" || true)
    [[ $timed -ge 2 ]] || fail "$class: $timed tiled candidates timed: $(cat "$tmp/err")"
    grep -q skipped "$tmp/err" && fail "$class: a tiled candidate was skipped: $(cat "$tmp/err")"
    grep -q "chose t" "$tmp/err" || fail "$class: no tiled variant chosen: $(cat "$tmp/err")"
    if [[ $class == NN-m7* ]]; then
        grep -q "_sk .* GFLOP/s" "$tmp/err" || fail "$class: no split-K candidate timed"
    fi
    echo "ok   GPU candidates for $class: $timed timed, $(grep -o 'chose .*' "$tmp/err")"
done

# 7. TWIST_TUNE=off: the default, nothing timed, no cache.
rm -rf "$TWIST_CACHE_DIR"
mode=off bench || fail "bench with TWIST_TUNE=off failed"
[[ $(timings) == 0 ]] || fail "TWIST_TUNE=off timed candidates"
[[ -z $(cache_file) ]] || fail "TWIST_TUNE=off wrote a tuning cache"
echo "ok   TWIST_TUNE=off times nothing"

exit "$failures"
