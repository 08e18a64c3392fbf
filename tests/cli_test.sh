#!/usr/bin/env bash
# The twist CLI: bad input gives one clear message on stderr naming the problem and a non-zero
# exit (2 for usage, 1 for a runtime failure), never a crash or a sanitizer report; good input
# works. Usage: cli_test.sh PATH/TO/twist
set -euo pipefail

twist=${1:?usage: cli_test.sh PATH/TO/twist}
failures=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# Runs twist with the given arguments, capturing stdout, stderr and the exit code.
run() {
    set +e
    "$twist" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    set -e
}

no_crash() {
    if ((rc >= 128)); then fail "twist $* died with signal $((rc - 128))"; fi
    if grep -qE 'Sanitizer|runtime error:' "$tmp/err"; then fail "twist $*: sanitizer report"; cat "$tmp/err" >&2; fi
}

# expect_fail CODE NEEDLE ARGS...: exit code CODE, stderr mentions NEEDLE, nothing on stdout.
expect_fail() {
    local code=$1 needle=$2
    shift 2
    run "$@"
    no_crash "$@"
    if [[ $rc != "$code" ]]; then fail "twist $*: exit $rc, expected $code"; fi
    if ! grep -qF -- "$needle" "$tmp/err"; then
        fail "twist $*: stderr does not mention '$needle':"; cat "$tmp/err" >&2
    fi
    if [[ -s $tmp/out ]]; then fail "twist $*: wrote to stdout on failure"; fi
    echo "ok   exit $rc  twist $*  ->  $(head -n 1 "$tmp/err")"
}

expect_ok() {
    run "$@"
    no_crash "$@"
    if [[ $rc != 0 ]]; then fail "twist $*: exit $rc"; cat "$tmp/err" >&2; fi
    echo "ok   exit 0  twist $*"
}

# Every line of the output is one JSON record with event and command fields (strict parser:
# NaN and Infinity are refused). records_test.sh checks every command's records in depth.
valid_json() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import json, sys
def reject(token): raise ValueError("not JSON: " + token)
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert lines, "no records"
for l in lines:
    r = json.loads(l, parse_constant=reject)
    assert isinstance(r.get("event"), str) and isinstance(r.get("command"), str), l' "$tmp/out" ||
            fail "twist $*: output is not JSON records"
    else
        echo "note: python3 not found; JSON validity of 'twist $*' not checked"
    fi
}

gemm=(bench gemm --device cpu)
attn=(bench attention --device cpu --batch 1 --heads 2 --seq 16)

# ---- commands and flags -------------------------------------------------------------------
expect_fail 2 "unknown command 'frobnicate'" frobnicate
expect_fail 2 "usage:"
expect_fail 2 "unknown benchmark 'conv'" bench conv
expect_fail 2 "unknown option '--bogus'" "${gemm[@]}" --m 4 --n 4 --k 4 --bogus
expect_fail 2 "unknown option '--bogus'" devices --bogus
expect_fail 2 "unexpected argument 'extra'" devices extra
expect_fail 2 "--m given more than once" "${gemm[@]}" --m 4 --m 4 --n 4 --k 4
expect_fail 2 "--impl must be one of auto, vendor, own" "${gemm[@]}" --m 4 --n 4 --k 4 --impl fast
expect_fail 2 "--device needs a value" bench gemm --m 4 --n 4 --k 4 --device

# ---- numbers ------------------------------------------------------------------------------
expect_fail 2 "missing required option --m" "${gemm[@]}" --n 4 --k 4
expect_fail 2 "--m must be between 1 and" "${gemm[@]}" --m 0 --n 4 --k 4
expect_fail 2 "--m must be between 1 and" "${gemm[@]}" --m -3 --n 4 --k 4
expect_fail 2 "--m expects a whole number, got 'abc'" "${gemm[@]}" --m abc --n 4 --k 4
expect_fail 2 "--m expects a whole number, got '4x'" "${gemm[@]}" --m 4x --n 4 --k 4
expect_fail 2 "--m must be between 1 and" "${gemm[@]}" --m 99999999999 --n 4 --k 4
expect_fail 2 "--m needs a value" "${gemm[@]}" --n 4 --k 4 --m
expect_fail 2 "--repeat must be between" "${gemm[@]}" --m 4 --n 4 --k 4 --repeat 0
expect_fail 2 "buffer sizes overflow" "${gemm[@]}" --m 2000000000 --n 2000000000 --k 2000000000
expect_fail 1 "needs" "${gemm[@]}" --m 200000 --n 200000 --k 200000
expect_fail 2 "--head-dim must be between 1 and" "${attn[@]}" --head-dim 0
expect_fail 2 "missing required option --head-dim" "${attn[@]}"
expect_fail 2 "--layout must be one of packed, contiguous" "${attn[@]}" --head-dim 8 --layout rows
expect_fail 1 "needs" bench attention --device cpu --batch 64 --heads 64 --seq 65536 --head-dim 64

# ---- devices ------------------------------------------------------------------------------
expect_fail 1 "unknown device spec 'gpu:7'" bench gemm --device gpu:7 --m 4 --n 4 --k 4
expect_fail 1 "unknown device spec 'gpu:7'" bench gemm --device cpu --also gpu:7 --m 4 --n 4 --k 4
expect_fail 1 "unknown device spec 'gpu:7'" bench attention --device cpu --against gpu:7 --batch 1 --heads 1 --seq 4 --head-dim 4 --repeat 1
expect_fail 1 "opencl:99" bench gemm --device opencl:99 --m 4 --n 4 --k 4
expect_fail 1 "cpu:1" bench attention --device cpu:1 --batch 1 --heads 1 --seq 4 --head-dim 4
expect_fail 1 "single GEMM implementation" "${gemm[@]}" --m 4 --n 4 --k 4 --impl own

run devices
no_crash devices
not_built=$(awk '$1 == "backend" && /not built/ { print $2; exit }' "$tmp/out")
if [[ -n $not_built ]]; then
    expect_fail 1 "not built" bench gemm --device "$not_built:0" --m 4 --n 4 --k 4
else
    echo "skip backend-not-built case: every backend is built here"
fi

expect_ok devices
grep -qE '^cpu ' "$tmp/out" || fail "twist devices does not list cpu"
expect_ok devices --json
valid_json devices --json
grep -q '"device":"cpu"' "$tmp/out" || fail "twist devices --json does not list cpu"

# ---- help ---------------------------------------------------------------------------------
for command in "--help" "devices --help" "bench --help" "bench gemm --help" "bench attention --help"; do
    # shellcheck disable=SC2086
    expect_ok $command
    grep -q "usage:" "$tmp/out" || fail "twist $command: no usage on stdout"
done

# ---- small successful runs ----------------------------------------------------------------
expect_ok "${gemm[@]}" --m 64 --n 64 --k 64 --repeat 3
grep -q "GFLOP/s" "$tmp/out" || fail "bench gemm printed no GFLOP/s"
expect_ok "${gemm[@]}" --m 64 --n 48 --k 17 --trans-a --trans-b --batch 3 --repeat 2 --peer --json
valid_json bench gemm --json
grep -q '"max_abs_diff":0' "$tmp/out" || fail "cpu twist and OpenBLAS differ: $(cat "$tmp/out")"
expect_ok "${attn[@]}" --head-dim 8 --repeat 1
grep -q "max |fused - unfused|" "$tmp/out" || fail "bench attention printed no comparison"
expect_ok "${attn[@]}" --head-dim 8 --repeat 1 --layout contiguous --json
valid_json bench attention --json

# On every OpenCL device: a small GEMM against CLBlast called directly. The first run on a fresh
# machine waits for PoCL to compile CLBlast's kernels (PoCL caches them afterwards).
run devices
mapfile -t opencl_specs < <(awk '$1 ~ /^opencl:/ { print $1 }' "$tmp/out")
for spec in "${opencl_specs[@]}"; do
    expect_ok bench gemm --device "$spec" --m 64 --n 48 --k 33 --batch 2 --trans-b --repeat 2 --peer --json
    valid_json bench gemm --device "$spec" --json
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["max_abs_diff"] <= 1e-4 * (1 + d["max_abs_c"]) else 1)' "$tmp/out" ||
            fail "$spec: twist and CLBlast results differ: $(cat "$tmp/out")"
    fi
done

# Training commands: bad input first, then a tiny train / resume / eval / sample cycle.
corpus=$tmp/corpus.txt
expect_fail 2 "missing required option --out" train --steps 1
expect_fail 2 "--preset must be one of nano, tiny, small" train --preset huge --out "$tmp/m"
expect_fail 2 "--lr expects a number, got 'abc'" train --lr abc --out "$tmp/m"
expect_fail 2 "--steps must be between 1 and" train --steps 0 --out "$tmp/m"
expect_fail 2 "--embd 30 must be a multiple of --heads 4" train --embd 30 --heads 4 --out "$tmp/m"
expect_fail 2 "--min-lr 0.1 exceeds --lr 0.01" train --lr 0.01 --min-lr 0.1 --out "$tmp/m"
expect_fail 1 "/nonexistent/corpus.txt" train --data /nonexistent/corpus.txt --out "$tmp/m"
expect_fail 1 "gpu:7" train --device gpu:7 --out "$tmp/m"
mkdir -p "$tmp/not_a_checkpoint" && touch "$tmp/not_a_checkpoint/notes.txt"
expect_fail 1 "holds files but no twist checkpoint" train --out "$tmp/not_a_checkpoint"
expect_fail 2 "--level must be between 0 and 1" data synth --level 2 --out "$corpus"
expect_ok data synth --level 0 --words 30000 --out "$corpus"
printf 'x\0y\n' >"$tmp/nul.txt"
expect_fail 1 "nul.txt" train --data "$tmp/nul.txt" --out "$tmp/m"
expect_fail 1 "no such checkpoint directory" eval --model "$tmp/none" --data "$corpus"
expect_fail 1 "no such checkpoint directory" sample --model "$tmp/none"
small=(--device cpu --data "$corpus" --vocab 300 --preset nano --layers 1 --embd 32 --heads 2
       --seq-len 16 --batch 4 --eval-batches 2 --log-every 2)
expect_ok train "${small[@]}" --steps 6 --stop-after 3 --out "$tmp/m"
expect_ok train --out "$tmp/m" --resume --json --log-every 1
valid_json train --resume --json
grep -q '"step":6' "$tmp/out" || fail "resumed run did not reach step 6: $(cat "$tmp/out")"
expect_fail 1 "has done 6 of 6 steps" train --out "$tmp/m" --resume
expect_ok eval --model "$tmp/m" --data "$corpus" --device cpu --json
valid_json eval --json
expect_ok sample --model "$tmp/m" --prompt "the dog" --tokens 5 --device cpu
grep -q "^the dog" "$tmp/out" || fail "sample did not echo its prompt: $(cat "$tmp/out")"
expect_ok data tokenizer --data "$corpus" --vocab 300 --out "$tmp/tok.json"
expect_fail 1 "tok.json" train --tokenizer "$tmp/tok.json.missing" --data "$corpus" --out "$tmp/m2"
head -c 100 "$tmp/tok.json" >"$tmp/bad_tok.json"
expect_fail 1 "bad_tok.json" train --tokenizer "$tmp/bad_tok.json" --data "$corpus" --out "$tmp/m2"

if ((failures)); then
    echo "cli_test: $failures failure(s)"
    exit 1
fi
echo "cli_test: all checks passed"
