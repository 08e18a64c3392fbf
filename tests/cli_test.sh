#!/usr/bin/env bash
# The twist CLI: bad input gives one clear message on stderr naming the problem and a non-zero
# exit (2 for usage, 1 for a runtime failure), never a crash or a sanitizer report; good input
# works. Usage: cli_test.sh PATH/TO/twist
set -euo pipefail

twist=${1:?usage: cli_test.sh PATH/TO/twist}
twist=$(cd "$(dirname "$twist")" && pwd)/$(basename "$twist") # absolute: some cases cd
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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
# --ops: the op list with the data types per device (the cpu runs every op in bf16 and f16).
expect_ok devices --ops --no-measure
grep -qE '^gemm +f32 bf16 f16' "$tmp/out" || fail "twist devices --ops: cpu gemm not in f32 bf16 f16"
grep -qE '^scatter_cols +f32 bf16 f16' "$tmp/out" || fail "twist devices --ops: no scatter_cols row"
expect_ok devices --ops --no-measure --json
valid_json devices --ops --json
grep -q '"gemm":{"dtypes":\["f32","bf16","f16"\]' "$tmp/out" ||
    fail "twist devices --ops --json: no dtypes for the cpu's gemm: $(head -c 400 "$tmp/out")"

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
# bench gemm in 16-bit types: bf16 against f32 on the same device in one command; bad values.
expect_fail 2 "--dtype must be one of f32, bf16, f16" "${gemm[@]}" --m 4 --n 4 --k 4 --dtype f8
expect_fail 2 "--also-dtype and --also-variant need --also SPEC" "${gemm[@]}" --m 4 --n 4 --k 4 --also-dtype f32
expect_fail 1 "no variant" "${gemm[@]}" --m 4 --n 4 --k 4 --variant nope
expect_ok "${gemm[@]}" --m 64 --n 48 --k 40 --dtype bf16 --also cpu --also-dtype f32 --repeat 2 --json
valid_json bench gemm --dtype bf16 --json
grep -q '"dtype":"bf16"' "$tmp/out" && grep -q '"dtype":"f32"' "$tmp/out" ||
    fail "bench gemm --dtype bf16 --also-dtype f32: no dtypes in the record: $(cat "$tmp/out")"
expect_ok "${gemm[@]}" --m 33 --n 17 --k 65 --dtype f16 --trans-a --repeat 1 --peer --json
if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if 0 < d["max_abs_diff"] <= 4e-3 * d["max_abs_c"] else 1)' "$tmp/out" ||
        fail "cpu f16 GEMM against fp32 OpenBLAS: not a rounding-sized difference: $(cat "$tmp/out")"
fi

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

# ---- runs never lose work (issue 11) ---------------------------------------------------------
# A checkpoint in --out is never replaced by a new run unless --overwrite; --overwrite keeps the
# user's files.
state_step() { sed -n 's/^[[:space:]]*"step":[[:space:]]*\([-0-9.e+]*\),*$/\1/p' "$1/state.json" | head -n 1; }
expect_fail 1 "already holds a twist checkpoint" train "${small[@]}" --steps 2 --out "$tmp/m"
[[ $(state_step "$tmp/m") == 6 ]] || fail "a refused run changed $tmp/m (step $(state_step "$tmp/m"))"
grep -q -- "--resume" "$tmp/err" && grep -q -- "--overwrite" "$tmp/err" || fail "refusal does not name --resume and --overwrite"
expect_fail 2 "exclude each other" train --out "$tmp/m" --resume --overwrite
cp -r "$tmp/m" "$tmp/ow"
echo "my notes" >"$tmp/ow/NOTES.txt"
mkdir -p "$tmp/ow/plots" && echo "<svg/>" >"$tmp/ow/plots/loss.svg"
expect_ok train "${small[@]}" --steps 2 --out "$tmp/ow" --overwrite
[[ $(state_step "$tmp/ow") == 2 ]] || fail "--overwrite did not replace the checkpoint (step $(state_step "$tmp/ow"))"
[[ $(cat "$tmp/ow/NOTES.txt") == "my notes" && -f $tmp/ow/plots/loss.svg ]] || fail "--overwrite touched the user's files"
[[ -z $(find "$tmp" -maxdepth 1 -name 'ow.*') ]] || fail "--overwrite left or moved things beside $tmp/ow: $(ls "$tmp")"
expect_ok train "${small[@]}" --steps 4 --out "$tmp/ow" --resume
[[ $(cat "$tmp/ow/NOTES.txt") == "my notes" && -f $tmp/ow/plots/loss.svg ]] || fail "a save touched the user's files"
# A directory of other files is never written into.
mkdir -p "$tmp/userdir" && echo "thesis" >"$tmp/userdir/thesis.tex"
expect_fail 1 "holds files but no twist checkpoint" train "${small[@]}" --steps 2 --out "$tmp/userdir" --overwrite

# --resume: options that contradict the checkpoint are refused, naming flag and both values.
expect_fail 1 "--lr 0.01 conflicts with the checkpoint" train --out "$tmp/ow" --resume --steps 8 --lr 0.01
grep -q "(lr 0.001)" "$tmp/err" || fail "lr conflict does not give the checkpoint's value"
expect_fail 1 "--batch 8 conflicts with the checkpoint" train --out "$tmp/ow" --resume --steps 8 --batch 8
expect_fail 1 "--preset tiny (n_layer 4) conflicts" train --out "$tmp/ow" --resume --steps 8 --preset tiny
expect_fail 1 "--seq-len 32 conflicts with the checkpoint" train --out "$tmp/ow" --resume --steps 8 --seq-len 32
expect_fail 1 "--tokenizer cannot be given" train --out "$tmp/ow" --resume --steps 8 --tokenizer "$tmp/tok.json"
# Given values equal to the checkpoint's are fine; --steps changes the total, said with the
# schedule rule.
expect_ok train --out "$tmp/ow" --resume --steps 8 --batch 4 --lr 0.001 --log-every 1
grep -q "the cosine schedule is recomputed for 8 steps; the learning rate at step 4 goes from" "$tmp/out" ||
    fail "--steps on resume did not state the schedule rule: $(cat "$tmp/out")"
grep -q "^step 8/8 " "$tmp/out" || fail "resume with --steps 8 did not reach step 8"

# Signals: the current step ends, a checkpoint is saved, exit 128 + signal; resume continues
# from the saved step.
long=(train --device cpu --data "$corpus" --vocab 300 --preset nano --layers 1 --embd 32 --heads 2
      --seq-len 16 --batch 4 --eval-batches 2 --steps 1000000 --log-every 1000000 --eval-every 0)
wait_for_training() { # $1: stdout file of a background run
    for _ in $(seq 1 600); do grep -q "^model:" "$1" 2>/dev/null && break; sleep 0.1; done
    grep -q "^model:" "$1" || fail "the background run did not start: $(cat "$1")"
    sleep 0.5
}
for sig in INT TERM HUP; do
    want=$((128 + $(kill -l "$sig")))
    rm -rf "$tmp/sig" "$tmp/sig.out" # a stale sig.out would satisfy wait_for_training at once
    "$twist" "${long[@]}" --out "$tmp/sig" >"$tmp/sig.out" 2>"$tmp/sig.err" &
    pid=$!
    wait_for_training "$tmp/sig.out"
    kill -s "$sig" "$pid"
    set +e; wait "$pid"; rc=$?; set -e
    saved=$(state_step "$tmp/sig" 2>/dev/null || true)
    if [[ $rc != "$want" ]]; then fail "SIG$sig: exit $rc, expected $want"; cat "$tmp/sig.err" >&2; fi
    grep -q "stopped by SIG$sig: the checkpoint of step $saved is saved in $tmp/sig" "$tmp/sig.err" ||
        fail "SIG$sig: no message naming the saved step $saved: $(cat "$tmp/sig.err")"
    [[ -n $saved && $saved -gt 0 ]] || fail "SIG$sig: no checkpoint saved"
    echo "ok   SIG$sig -> exit $rc, checkpoint of step $saved"
done
# A second signal aborts at once: with steps of seconds (the tiny preset, batch 64), the second
# SIGINT 0.1 s after the first ends the process inside the step, before any save.
rm -rf "$tmp/abort" "$tmp/abort.out"
"$twist" train --device cpu --data "$corpus" --vocab 300 --preset tiny --batch 64 --steps 1000 \
    --eval-every 0 --out "$tmp/abort" >"$tmp/abort.out" 2>"$tmp/abort.err" &
pid=$!
wait_for_training "$tmp/abort.out"
kill -INT "$pid"; sleep 0.1; kill -INT "$pid" 2>/dev/null || true
set +e; wait "$pid"; rc=$?; set -e
if [[ $rc != 130 ]] || grep -q "stopped by" "$tmp/abort.err" || [[ -e $tmp/abort/state.json ]]; then
    fail "a second SIGINT did not abort at once: exit $rc, $(cat "$tmp/abort.err")"
else
    echo "ok   second SIGINT -> exit $rc at once, nothing saved"
fi
expect_ok train --out "$tmp/sig" --resume --stop-after 2 --log-every 1
grep -q "resumed $tmp/sig at step $saved of 1000000" "$tmp/out" || fail "resume did not continue from step $saved"
grep -q "^step $((saved + 2))/1000000 " "$tmp/out" || fail "resume did not train steps $((saved + 1))..$((saved + 2))"

# A lock: a second run on the same --out is refused, naming the first one's pid; a lock file
# left by a killed run is taken over.
"$twist" "${long[@]}" --out "$tmp/lock" >"$tmp/lock.out" 2>&1 &
pid=$!
wait_for_training "$tmp/lock.out"
expect_fail 1 "in use by another twist process (pid $pid" train "${small[@]}" --steps 2 --out "$tmp/lock" --overwrite
kill -TERM "$pid"; set +e; wait "$pid"; set -e
echo 99999999 >"$tmp/lock/.twist-lock"
expect_ok train --out "$tmp/lock" --resume --stop-after 1 --log-every 1

# --keep 3: the three newest saves also in step-* directories (hard links); older ones pruned.
expect_ok train "${small[@]}" --steps 10 --save-every 2 --keep 3 --out "$tmp/keep"
for s in 2 4; do [[ ! -e $tmp/keep/step-00000000$s ]] || fail "--keep 3 kept step $s"; done
for s in 6 8; do [[ $(state_step "$tmp/keep/step-00000000$s") == "$s" ]] || fail "--keep 3 lost step $s"; done
[[ $(state_step "$tmp/keep/step-000000010") == 10 ]] || fail "--keep 3 has no step-000000010"
[[ $(stat -c %i "$tmp/keep/model.safetensors") == $(stat -c %i "$tmp/keep/step-000000010/model.safetensors") ]] ||
    fail "--keep snapshot is not a hard link"
expect_ok eval --model "$tmp/keep/step-000000006" --data "$corpus" --device cpu

# Leftovers of killed runs are cleaned, but never through a symbolic link and never a directory
# of the user's named like one (appendix 1).
mkdir -p "$tmp/victim" && echo "precious" >"$tmp/victim/data.csv"
ln -s "$tmp/victim" "$tmp/keep/.twist-save-99999998"
mkdir -p "$tmp/keep/.twist-save-99999997" && echo "mine" >"$tmp/keep/.twist-save-99999997/thesis.tex"
ln -s "$tmp/victim" "$tmp/keep.tmp-99999996"
mkdir -p "$tmp/keep/.twist-save-99999995" && printf 'twist: a directory twist made; twist may remove it\n' >"$tmp/keep/.twist-save-99999995/.twist-marker"
expect_ok train --out "$tmp/keep" --resume --steps 12
[[ -f $tmp/victim/data.csv && -f $tmp/keep/.twist-save-99999997/thesis.tex && -L $tmp/keep.tmp-99999996 ]] ||
    fail "a leftover-like symbolic link or user directory was followed or emptied"
[[ ! -e $tmp/keep/.twist-save-99999995 ]] || fail "a leftover of twist's own was not cleaned"

# --out is checked before any training: a symbolic link, a bogus checksums.json, a read-only
# file system.
ln -s "$tmp/keep" "$tmp/link"
expect_fail 1 "is a symbolic link" train "${small[@]}" --steps 2 --out "$tmp/link" --overwrite
grep -q "^model:" "$tmp/out" && fail "trained before refusing a symbolic link --out"
expect_fail 1 "is a symbolic link" train --out "$tmp/link" --resume --steps 20
mkdir -p "$tmp/bogus" && echo '{"format": "other"}' >"$tmp/bogus/checksums.json"
expect_fail 1 "checksums.json is not twist's" train "${small[@]}" --steps 2 --out "$tmp/bogus"
mkdir -p "$tmp/ro"
if ((EUID != 0)); then
    chmod 0555 "$tmp/ro"
    expect_fail 1 "cannot write there" train "${small[@]}" --steps 2 --out "$tmp/ro"
    chmod 0755 "$tmp/ro"
elif command -v unshare >/dev/null && unshare -m true 2>/dev/null; then
    set +e
    unshare -m sh -c 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" && shift &&
        exec "$@"' sh "$tmp/ro" "$twist" train "${small[@]}" --steps 2 --out "$tmp/ro" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    set -e
    [[ $rc == 1 ]] && grep -q "cannot write there" "$tmp/err" && ! grep -q "^model:" "$tmp/out" ||
        fail "read-only --out: exit $rc: $(cat "$tmp/err")"
    echo "ok   exit $rc  twist train --out (read-only bind mount)  ->  $(head -n 1 "$tmp/err")"
else
    echo "skip read-only --out: running as root without mount namespaces"
fi

# A validation split shorter than one sequence is refused before training (appendix 5).
# One document (nothing held out), and 20 documents whose held-out one is shorter than T + 1.
head -c 20000 "$corpus" | tr '\n' ' ' >"$tmp/onedoc.txt"
awk -v RS= 'NR <= 20 { printf "%s\n\n", $0 }' "$corpus" >"$tmp/docs20.txt"
for args in "$tmp/onedoc.txt --seq-len 16" "$tmp/docs20.txt --seq-len 200"; do
    # shellcheck disable=SC2086
    run train --device cpu --vocab 260 --preset nano --steps 2 --out "$tmp/smallval" --data $args
    no_crash train --data "$args"
    [[ $rc == 1 ]] && grep -q "the validation split has .* fewer than one sequence of --seq-len" "$tmp/err" ||
        fail "train --data $args: exit $rc, no validation split message: $(cat "$tmp/err")"
    grep -q "^model:" "$tmp/out" && fail "train --data $args: trained before refusing the validation split"
    [[ ! -e $tmp/smallval ]] || fail "a refused run left $tmp/smallval behind"
    echo "ok   exit $rc  twist train --data $args  ->  $(head -n 1 "$tmp/err")"
done

# state.json numbers out of range are refused naming the field (appendix 13); the checksum is
# made right so only the number is wrong.
if command -v python3 >/dev/null 2>&1; then
    for case in "step=-2147483648" "step=-5" "step=1e300" "step=2.5" "options.batch=1e12" "options.lr=-1"; do
        rm -rf "$tmp/bad" && cp -r "$tmp/ow" "$tmp/bad"
        python3 - "$tmp/bad" "$case" <<'PY'
import hashlib, json, os, sys
d, case = sys.argv[1], sys.argv[2]
key, value = case.split("=")
state = json.load(open(os.path.join(d, "state.json")))
target = state
parts = key.split(".")
for p in parts[:-1]: target = target[p]
target[parts[-1]] = float(value) if any(c in value for c in ".e") else int(value)
text = json.dumps(state).encode()
open(os.path.join(d, "state.json"), "wb").write(text)
sums = json.load(open(os.path.join(d, "checksums.json")))
sums["files"]["state.json"] = {"size": len(text), "sha256": hashlib.sha256(text).hexdigest()}
open(os.path.join(d, "checksums.json"), "w").write(json.dumps(sums))
PY
        field=${case%%=*}
        expect_fail 1 "field '${field##*.}'" train --out "$tmp/bad" --resume --steps 20
    done
else
    echo "note: python3 not found; state.json range cases not checked"
fi

# The corpus is found from another working directory (absolute path in state.json); a moved
# corpus is named with the way to fix it (--data).
(cd / && "$twist" train --out "$tmp/ow" --resume --steps 9 >"$tmp/out" 2>"$tmp/err") ||
    fail "resume from / failed: $(cat "$tmp/err")"
mv "$corpus" "$tmp/moved.txt"
expect_fail 1 "pass --data FILE" train --out "$tmp/ow" --resume --steps 10
expect_ok train --out "$tmp/ow" --resume --steps 10 --data "$tmp/moved.txt"
mv "$tmp/moved.txt" "$corpus"

# twist ist / dp --out: the same rules, checked before any data or round (appendix 4).
dist=(--devices cpu --workers-per-device 2 --local-steps 1 --rounds 1 --data "$corpus" --vocab 300
      --preset nano --layers 1 --embd 32 --heads 2 --seq-len 16 --batch 4 --eval-batches 2)
expect_fail 1 "holds files but no twist checkpoint" ist --heads-per-worker 1 "${dist[@]}" --out "$tmp/userdir"
expect_fail 1 "is a symbolic link" dp --mode localsgd "${dist[@]}" --out "$tmp/link"
cp -r "$tmp/ow" "$tmp/istow"
expect_fail 1 "already holds a twist checkpoint; pass --overwrite" ist --heads-per-worker 1 "${dist[@]}" --out "$tmp/istow"
expect_ok ist --heads-per-worker 1 "${dist[@]}" --out "$tmp/istow" --overwrite
[[ $(cat "$tmp/istow/NOTES.txt") == "my notes" && -f $tmp/istow/plots/loss.svg ]] || fail "ist --overwrite touched the user's files"
expect_ok eval --model "$tmp/istow" --data "$corpus" --device cpu

# cd ck && twist eval --model . (appendix 17).
(cd "$tmp/ow" && "$twist" eval --model . --data "$corpus" --device cpu >"$tmp/out" 2>"$tmp/err") ||
    fail "eval --model . failed: $(cat "$tmp/err")"
grep -q "loss" "$tmp/out" && echo "ok   exit 0  (cd ck && twist eval --model .)"

if ((failures)); then
    echo "cli_test: $failures failure(s)"
    exit 1
fi
echo "cli_test: all checks passed"
