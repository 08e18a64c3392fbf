#!/usr/bin/env bash
# Distributed runs through the CLI (`twist ist`, `twist dp`) on a small synthetic corpus and a
# very small model. Usage: ist_test.sh PATH/TO/twist CASE, CASE one of
#   identity   IST with one worker holding every head and unit, dp allreduce and local SGD with
#              one worker: the saved model and optimizer state equal `twist train`'s, byte for byte
#   mpi        mpirun -np 3 --transport mpi gives the threads run's merged model byte for byte
#              (IST and data parallel); skipped without mpirun or without the MPI transport
#   fault      a worker failing in round 3 of 4 (--inject-fault 1:2 counts rounds from 0): the
#              run completes with the others, the JSON records show the worker count drop and
#              finite losses
#   mixed      cpu, opencl:0, vulkan:0 side by side (the absent ones skipped): the merged
#              model's validation loss falls
#   flags      bad flags: one clear message naming the flag, exit 2
set -euo pipefail

twist=${1:?usage: ist_test.sh PATH/TO/twist CASE}
case_name=${2:?usage: ist_test.sh PATH/TO/twist CASE}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

corpus=$tmp/corpus.txt
"$twist" data synth --level 0 --words 20000 --out "$corpus" >/dev/null
# A model small enough for lavapipe: 2 layers, width 64, 4 heads, T 32, vocab 384.
model=(--data "$corpus" --vocab 384 --preset nano --layers 2 --embd 64 --heads 4 --seq-len 32
       --batch 4 --eval-batches 4 --seed 7)

same_files() { # DIR_A DIR_B WHAT
    for file in model.safetensors optimizer.safetensors; do
        if ! cmp -s "$1/$file" "$2/$file"; then fail "$3: $file differs from $1/$file"; fi
    done
}

# Prints "round workers failed val_loss train_loss" per round: the "round" record (rounds
# counted from 1) and the "eval" record of the same round.
records() {
    python3 - "$1" <<'EOF'
import json, sys
rounds, val = [], {}
for line in open(sys.argv[1]):
    r = json.loads(line, parse_constant=lambda token: sys.exit("not JSON: " + token))
    if r["event"] == "round":
        rounds.append(r)
    elif r["event"] == "eval":
        val[r["round"]] = r["loss"]
for r in rounds:
    print(r["round"], r["workers"], len(r["failed_workers"]), val.get(r["round"]), r["loss"])
EOF
}

case_identity() {
    "$twist" train --device cpu --steps 6 --warmup 1 "${model[@]}" --out "$tmp/plain" >/dev/null
    "$twist" ist --devices cpu --heads-per-worker 4 --local-steps 3 --rounds 2 --warmup 1 \
        "${model[@]}" --out "$tmp/ist" >/dev/null
    same_files "$tmp/plain" "$tmp/ist" "ist, one worker with every head"
    for mode in allreduce localsgd; do
        "$twist" dp --mode $mode --devices cpu --local-steps 2 --rounds 3 --warmup 1 \
            "${model[@]}" --out "$tmp/$mode" >/dev/null
        same_files "$tmp/plain" "$tmp/$mode" "dp --mode $mode, one worker"
    done
    echo "ist, dp allreduce and dp localsgd with one worker equal twist train byte for byte"
}

case_mpi() {
    if ! command -v mpirun >/dev/null 2>&1; then
        echo "skipped: mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)"
        exit 77
    fi
    local common=(--devices cpu --workers-per-device 3 --local-steps 2 --rounds 2 "${model[@]}")
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
    # Components stay loaded, so a sanitizer build can name (and suppress) their leaks.
    export OMPI_MCA_mca_base_component_disable_dlclose=1
    # Open MPI's leaks at exit come through frames without frame pointers: the slow unwinder
    # names their libraries, so the suppressions in tools/lib/lsan.supp can match them.
    export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}fast_unwind_on_malloc=0"
    local probe
    set +e
    probe=$("$twist" ist --heads-per-worker 2 "${common[@]}" --transport mpi --rounds 1 2>&1)
    set -e
    if grep -q "built without MPI" <<<"$probe"; then
        echo "skipped: this twist was built without the MPI transport"
        exit 77
    fi
    "$twist" ist --heads-per-worker 2 "${common[@]}" --out "$tmp/threads" >/dev/null
    timeout 300 mpirun -np 3 --oversubscribe "$twist" ist --heads-per-worker 2 "${common[@]}" \
        --transport mpi --out "$tmp/mpi" >/dev/null
    same_files "$tmp/threads" "$tmp/mpi" "ist over MPI"
    "$twist" dp --mode allreduce "${common[@]}" --out "$tmp/dp-threads" >/dev/null
    timeout 300 mpirun -np 3 --oversubscribe "$twist" dp --mode allreduce "${common[@]}" \
        --transport mpi --out "$tmp/dp-mpi" >/dev/null
    same_files "$tmp/dp-threads" "$tmp/dp-mpi" "dp allreduce over MPI"
    echo "mpirun -np 3: the merged models equal the threads runs' byte for byte"
}

case_fault() {
    "$twist" ist --devices cpu --workers-per-device 3 --heads-per-worker 2 --local-steps 2 \
        --rounds 4 "${model[@]}" --inject-fault 1:2 --json "$tmp/f.jsonl" >"$tmp/out"
    grep -q "worker 1 (cpu) failed" "$tmp/out" || fail "no message about the failed worker"
    records "$tmp/f.jsonl" >"$tmp/records"
    cat "$tmp/records"
    local expected="1 3 0
2 3 0
3 2 1
4 2 0"
    [[ $(cut -d' ' -f1-3 "$tmp/records") == "$expected" ]] ||
        fail "worker counts per round are not 3 3 2 2 with one failure in round 3"
    if grep -qiE "nan|inf|None" "$tmp/records"; then fail "a loss is not finite"; fi
    [[ $(grep -c '"event":"round"' "$tmp/f.jsonl") == 4 ]] || fail "expected 4 round records"
}

case_mixed() {
    local devices=cpu missing=()
    "$twist" devices >"$tmp/devices" 2>&1 || true
    for spec in opencl:0 vulkan:0; do
        if grep -qF "$spec" "$tmp/devices"; then devices+=",$spec"; else missing+=("$spec"); fi
    done
    if ((${#missing[@]})); then echo "not on this machine, left out: ${missing[*]}"; fi
    "$twist" ist --devices "$devices" --heads-per-worker 2 --local-steps 4 --rounds 3 \
        --lr 3e-3 "${model[@]}" --json "$tmp/m.jsonl" >/dev/null
    echo "devices: $devices"
    records "$tmp/m.jsonl" | tee "$tmp/records"
    python3 - "$tmp/records" <<'EOF' || fail "validation loss did not fall"
import sys
loss = [float(line.split()[3]) for line in open(sys.argv[1])]
sys.exit(0 if loss[-1] < loss[0] and all(b < a + 0.05 for a, b in zip(loss, loss[1:])) else 1)
EOF
}

# expect_usage NEEDLE ARGS...: exit 2, stderr names NEEDLE, nothing on stdout.
expect_usage() {
    local needle=$1 rc=0
    shift
    "$twist" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [[ $rc == 2 ]] || fail "twist $*: exit $rc, expected 2"
    grep -qF -- "$needle" "$tmp/err" || { fail "twist $*: stderr lacks '$needle'"; cat "$tmp/err"; }
    [[ ! -s $tmp/out ]] || fail "twist $*: wrote to stdout"
}

case_flags() {
    local base=(--devices cpu --local-steps 1 --rounds 1 --data "$corpus" --heads 4 --embd 64)
    expect_usage "--balance" ist "${base[@]}" --heads-per-worker 4 --balance fastest
    expect_usage "--transport" ist "${base[@]}" --heads-per-worker 4 --transport pigeon
    expect_usage "--workers-per-device" ist "${base[@]}" --heads-per-worker 4 --workers-per-device 0
    expect_usage "--heads-per-worker" ist "${base[@]}" --heads-per-worker 1 --workers-per-device 2
    expect_usage "--heads-per-worker" ist "${base[@]}"
    expect_usage "--mode" dp "${base[@]}" --mode ring
    expect_usage "--mode" dp "${base[@]}"
    expect_usage "--heads-per-worker" dp "${base[@]}" --mode allreduce --heads-per-worker 2
    expect_usage "--inject-fault" ist "${base[@]}" --heads-per-worker 4 --inject-fault x
    expect_usage "--slow-worker" ist "${base[@]}" --heads-per-worker 4 --slow-worker 0:0.5
    expect_usage "--slow-worker" ist "${base[@]}" --heads-per-worker 4 --slow-worker 3:2
    expect_usage "--devices" ist --devices cpu,,cpu --heads-per-worker 4 --data "$corpus"
}

case "$case_name" in
identity | mpi | fault | mixed | flags) "case_$case_name" ;;
*) echo "unknown case $case_name" >&2; exit 2 ;;
esac
if ((failures)); then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "ok: $case_name"
