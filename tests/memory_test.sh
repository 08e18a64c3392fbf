#!/usr/bin/env bash
# --device-memory through the CLI. Usage: memory_test.sh PATH/TO/twist CASE, CASE one of
#   flags   bad values are refused by `train`, `ist` and `dp` alike: one message naming
#           --device-memory, exit 2; a cap on a device the run does not use is refused too
#   train   `twist train` of a model whose training state is larger than the cap refuses before
#           any step (exit 1), naming the need and the cap; with a cap it fits, it trains
#   ist     the same model and cap, 4 IST workers on the cpu (the cap applies to each): the
#           planner fits subnets and micro-batches under the cap, every worker's measured device
#           peak stays under it, the run completes and the validation loss falls
#   dp      data parallel under a cap below the whole model at batch 4: micro-batches shrink and
#           the run completes; under a cap below the whole model at micro-batch 1 it refuses
#   resume  the capped IST run stopped after round 1 of 3 and resumed ends with the weights and
#           moments of the uninterrupted run, byte for byte (the plan depends on the caps only)
#   mpi     the capped IST run over mpirun -np 4 --transport mpi (each rank caps its own device
#           and rank 0 plans with the caps) saves the threads run's model byte for byte; skipped
#           without mpirun or the MPI transport
set -euo pipefail

twist=${1:?usage: memory_test.sh PATH/TO/twist CASE}
case_name=${2:?usage: memory_test.sh PATH/TO/twist CASE}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/ist_lib.sh"
# the model of ist_lib.sh needs 1.9 MiB for parameters, gradients and AdamW moments alone
cap=1536K

expect_usage() { # WHAT NEEDLE COMMAND...
    local what=$1 needle=$2
    shift 2
    local code=0
    "$@" >"$tmp/out" 2>"$tmp/err" || code=$?
    if [[ $code -ne 2 ]]; then fail "$what: exit $code, expected 2"; fi
    if ! grep -q -- "$needle" "$tmp/err"; then
        fail "$what: stderr does not mention '$needle': $(cat "$tmp/err")"
    fi
    if [[ $(grep -c . "$tmp/err") -gt 2 ]]; then fail "$what: more than one message"; fi
}

case_flags() {
    local -a runs=(
        "train --device cpu --steps 1 --out $tmp/flags"
        "ist --devices cpu --heads-per-worker 4 --rounds 1 --local-steps 1"
        "dp --mode allreduce --devices cpu --rounds 1 --local-steps 1")
    for run in "${runs[@]}"; do
        read -r -a args <<<"$run"
        expect_usage "${args[0]} cpu=abc" "--device-memory 'cpu=abc'" \
            "$twist" "${args[@]}" "${model[@]}" --device-memory cpu=abc
        expect_usage "${args[0]} cpu=0" "--device-memory 'cpu=0'" \
            "$twist" "${args[@]}" "${model[@]}" --device-memory cpu=0
        expect_usage "${args[0]} gpu=1M" "unknown device 'gpu'" \
            "$twist" "${args[@]}" "${model[@]}" --device-memory gpu=1M
        expect_usage "${args[0]} cpu" "expected SPEC=BYTES" \
            "$twist" "${args[@]}" "${model[@]}" --device-memory cpu
        expect_usage "${args[0]} opencl:3" "opencl:3 is not a device of this run" \
            "$twist" "${args[@]}" "${model[@]}" --device-memory cpu=1M --device-memory opencl:3=1G
    done
    [[ ! -e $tmp/flags ]] || fail "a refused train wrote $tmp/flags"
}

case_train() {
    local code=0
    "$twist" train --device cpu --steps 4 "${model[@]}" --device-memory "cpu=$cap" \
        --out "$tmp/refused" >"$tmp/out" 2>"$tmp/err" || code=$?
    [[ $code -eq 1 ]] || fail "train under the cap: exit $code, expected 1"
    grep -q "does not fit: training it at batch 4 x 32 tokens needs 3.8 MiB" "$tmp/err" ||
        fail "train: no need in the message: $(cat "$tmp/err")"
    grep -q -- "--device-memory caps cpu at 1.5 MiB" "$tmp/err" ||
        fail "train: no cap in the message: $(cat "$tmp/err")"
    grep -q "step" "$tmp/out" && fail "train under the cap ran a step: $(cat "$tmp/out")"
    # Comma-separated and repeated caps, the last one for cpu large enough: it trains.
    "$twist" train --device cpu --steps 2 "${model[@]}" --device-memory "cpu=$cap" \
        --device-memory cpu=8M --out "$tmp/fits" >"$tmp/out" 2>&1 ||
        fail "train under an 8 MiB cap: $(cat "$tmp/out")"
}

case_ist() {
    "$twist" ist --devices cpu --workers-per-device 4 --heads-per-worker 1 --rounds 3 \
        --local-steps 4 --warmup 1 "${model[@]}" --device-memory "cpu=$cap" \
        --json="$tmp/ist.jsonl" >"$tmp/out" 2>&1 || fail "capped ist run: $(cat "$tmp/out")"
    python3 - "$tmp/ist.jsonl" $((1536 * 1024)) <<'PY' || fail "capped ist records"
import json, sys
cap = int(sys.argv[2])
val, bad = [], []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["event"] == "eval":
        val.append(r["loss"])
    if r["event"] != "round":
        continue
    for w in r["per_worker"]:
        if not w["ok"]: bad.append(f"round {r['round']}: worker {w['worker']} failed: {w.get('error')}")
        if w["memory_budget"] != cap: bad.append(f"worker {w['worker']} budget {w['memory_budget']}")
        if not w["device_peak_bytes"] <= w["memory_need"] <= cap:
            bad.append(f"worker {w['worker']}: peak {w['device_peak_bytes']}, need {w['memory_need']}, cap {cap}")
        if not 0 < w["micro_batch"] < 4: bad.append(f"worker {w['worker']}: micro-batch {w['micro_batch']}")
print("validation loss by round:", " ".join(f"{v:.4f}" for v in val))
if len(val) != 3 or not val[-1] < val[0]: bad.append(f"validation loss did not fall: {val}")
for b in bad: print(b)
sys.exit(1 if bad else 0)
PY
}

case_dp() {
    # The whole model at batch 4 needs 3.8 MiB, at micro-batch 1 about 2.4 MiB.
    "$twist" dp --mode allreduce --devices cpu --workers-per-device 2 --rounds 1 \
        --local-steps 2 "${model[@]}" --device-memory cpu=3M --json="$tmp/dp.jsonl" \
        >"$tmp/out" 2>&1 || fail "dp under a 3 MiB cap: $(cat "$tmp/out")"
    python3 - "$tmp/dp.jsonl" <<'PY' || fail "dp records"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["event"] == "round":
        for w in r["per_worker"]:
            assert w["ok"] and w["micro_batch"] in (1, 2), w
            assert w["device_peak_bytes"] <= 3 * 1024 * 1024, w
PY
    local code=0
    "$twist" dp --mode localsgd --devices cpu --workers-per-device 2 --rounds 1 \
        --local-steps 2 "${model[@]}" --device-memory "cpu=$cap" >"$tmp/out" 2>"$tmp/err" ||
        code=$?
    [[ $code -eq 1 ]] || fail "dp under the 1.5 MiB cap: exit $code, expected 1"
    grep -q "worker 0 on cpu has 1.5 MiB; the whole model needs\|worker 0 on cpu has 1.5 MiB, less than the smallest replica" "$tmp/err" ||
        fail "dp refusal: $(cat "$tmp/err")"
}

case_resume() {
    local common=(--devices cpu --workers-per-device 4 --heads-per-worker 1 --rounds 3
                  --local-steps 2 --warmup 1 "${model[@]}" --device-memory "cpu=$cap")
    "$twist" ist "${common[@]}" --out "$tmp/whole" >/dev/null || fail "uninterrupted run"
    "$twist" ist "${common[@]}" --out "$tmp/parts" --stop-after 1 >/dev/null || fail "first part"
    "$twist" ist "${common[@]}" --out "$tmp/parts" --resume >/dev/null || fail "resumed part"
    same_files "$tmp/whole" "$tmp/parts" "capped ist stopped and resumed"
}

case_mpi() {
    use_mpirun
    local common=(--devices cpu --workers-per-device 4 --heads-per-worker 1 --rounds 2
                  --local-steps 2 --warmup 1 "${model[@]}" --device-memory "cpu=$cap")
    local probe
    set +e
    probe=$("$twist" ist "${common[@]}" --transport mpi --rounds 1 2>&1)
    set -e
    if grep -q "built without MPI" <<<"$probe"; then
        echo "skipped: this twist was built without the MPI transport"
        exit 77
    fi
    "$twist" ist "${common[@]}" --out "$tmp/threads" >/dev/null
    timeout 300 mpirun -np 4 --oversubscribe "$twist" ist "${common[@]}" --transport mpi \
        --json="$tmp/mpi.jsonl" --out "$tmp/mpi" >/dev/null ||
        fail "capped ist over MPI exited $?"
    for file in model.safetensors optimizer.safetensors; do
        cmp -s "$tmp/threads/$file" "$tmp/mpi/$file" ||
            fail "capped ist over MPI: $file differs from the threads run's"
    done
    grep -q '"micro_batch":2' "$tmp/mpi.jsonl" || fail "MPI run records no micro-batch 2"
}

case $case_name in
flags | train | ist | dp | resume | mpi) "case_$case_name" ;;
*) echo "unknown case $case_name" >&2; exit 2 ;;
esac
if ((failures)); then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "ok: $case_name"
