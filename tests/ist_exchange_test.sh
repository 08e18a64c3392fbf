#!/usr/bin/env bash
# Exchange codecs and resume of distributed runs through the CLI, on a small synthetic corpus
# and a very small model. Usage: ist_exchange_test.sh PATH/TO/twist CASE, CASE one of
#   codec      IST with --codec fp32, bf16, bf16-delta completes; the validation loss of bf16 and
#              bf16-delta is within 0.02 of fp32's, bf16-delta's at least as close as bf16's;
#              the records count the bytes on the wire: bf16 moves half of fp32's, local SGD at
#              fp32 has ratio 1 against itself; dp allreduce and localsgd run under bf16-delta
#   codec_mpi  mpirun -np 3 with --codec bf16-delta (IST) and bf16 (dp allreduce) gives the
#              threads run's model byte for byte, and so does an MPI IST run stopped after 2 of
#              4 rounds and resumed; skipped without mpirun or the MPI transport
#   resume     ist, dp allreduce, dp localsgd (and ist with --codec bf16) stopped after 2 of 4
#              rounds (--stop-after) and resumed with --resume end with the same model.safetensors
#              and optimizer.safetensors, byte for byte, as the uninterrupted run; a conflicting
#              flag is refused naming it, a finished run says so, --resume without a checkpoint
#              and with --overwrite are refused, a bf16-delta resume says what it does not keep
set -euo pipefail

twist=${1:?usage: ist_exchange_test.sh PATH/TO/twist CASE}
case_name=${2:?usage: ist_exchange_test.sh PATH/TO/twist CASE}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/ist_lib.sh"

# "val_loss bytes_sent bytes_received ratio" of the last round of a --json file.
last_round() {
    python3 - "$1" <<'EOF'
import json, sys
val, last = None, None
for line in open(sys.argv[1]):
    r = json.loads(line, parse_constant=lambda token: sys.exit("not JSON: " + token))
    if r["event"] == "round":
        last = r
    elif r["event"] == "eval":
        val = r["loss"]
assert last["bytes_sent"] + last["bytes_received"] == last["bytes_round"], "sent + received"
print(val, last["bytes_sent"], last["bytes_received"], last["bytes_ratio_localsgd_fp32"])
EOF
}

case_codec() {
    local c common=(--devices cpu --workers-per-device 2 --local-steps 3 --rounds 4 "${model[@]}")
    for c in fp32 bf16 bf16-delta; do
        "$twist" ist --heads-per-worker 2 "${common[@]}" --codec "$c" --json "$tmp/$c.jsonl" \
            >/dev/null
        read -r val sent received ratio < <(last_round "$tmp/$c.jsonl")
        echo "ist --codec $c: val loss $val, bytes sent $sent, received $received, $ratio of" \
            "local SGD's fp32"
    done
    python3 - "$tmp" <<'EOF' || fail "codec losses or bytes are off"
import json, sys
def last(name):
    val = rnd = None
    for line in open(f"{sys.argv[1]}/{name}.jsonl"):
        r = json.loads(line)
        if r["event"] == "round": rnd = r
        if r["event"] == "eval": val = r["loss"]
    return val, rnd
f32, r32 = last("fp32"); b16, r16 = last("bf16"); d16, rd = last("bf16-delta")
ok = True
def check(cond, what):
    global ok
    if not cond:
        print("FAIL:", what, file=sys.stderr); ok = False
check(abs(b16 - f32) <= 0.02, f"bf16 val loss {b16} vs fp32 {f32}")
check(abs(d16 - f32) <= 0.02, f"bf16-delta val loss {d16} vs fp32 {f32}")
check(abs(d16 - f32) <= abs(b16 - f32) + 1e-6, f"bf16-delta ({d16}) further from fp32 ({f32}) than bf16 ({b16})")
check(r32["codec"] == "fp32" and r16["codec"] == "bf16" and rd["codec"] == "bf16-delta", "codec names")
check(r16["bytes_sent"] * 2 == r32["bytes_sent"] and r16["bytes_received"] * 2 == r32["bytes_received"],
      "bf16 does not move half of fp32's bytes")
# bf16-delta: bf16's bytes plus the share lists (4 bytes an index) on the way out
check(rd["bytes_received"] == r16["bytes_received"] and rd["bytes_sent"] > r16["bytes_sent"]
      and rd["bytes_sent"] < 1.01 * r16["bytes_sent"], "bf16-delta bytes")
check(abs(r16["bytes_ratio_localsgd_fp32"] * 2 - r32["bytes_ratio_localsgd_fp32"]) < 1e-9, "ratios")
sys.exit(0 if ok else 1)
EOF
    # Local SGD at fp32 is the yardstick: ratio 1. Both baselines run under bf16-delta.
    "$twist" dp --mode localsgd "${common[@]}" --json "$tmp/l.jsonl" >/dev/null
    read -r _ _ _ ratio < <(last_round "$tmp/l.jsonl")
    [[ $ratio == 1 || $ratio == 1.0 ]] || fail "local SGD fp32: ratio $ratio against itself"
    local mode
    for mode in allreduce localsgd; do
        "$twist" dp --mode "$mode" "${common[@]}" --codec bf16-delta --json "$tmp/$mode.jsonl" \
            >/dev/null
        read -r val _ _ ratio < <(last_round "$tmp/$mode.jsonl")
        echo "dp --mode $mode --codec bf16-delta: val loss $val, $ratio of local SGD's fp32"
        python3 -c 'import math, sys; sys.exit(not math.isfinite(float(sys.argv[1])))' "$val" ||
            fail "dp $mode bf16-delta: val loss $val"
    done
}

case_codec_mpi() {
    use_mpirun
    local common=(--devices cpu --workers-per-device 3 --local-steps 2 --rounds 2 "${model[@]}")
    local probe
    set +e
    probe=$("$twist" ist --heads-per-worker 2 "${common[@]}" --transport mpi --rounds 1 2>&1)
    set -e
    if grep -q "built without MPI" <<<"$probe"; then
        echo "skipped: this twist was built without the MPI transport"
        exit 77
    fi
    "$twist" ist --heads-per-worker 2 "${common[@]}" --codec bf16-delta --out "$tmp/t" >/dev/null
    timeout 300 mpirun -np 3 --oversubscribe "$twist" ist --heads-per-worker 2 "${common[@]}" \
        --codec bf16-delta --transport mpi --out "$tmp/m" >/dev/null
    same_files "$tmp/t" "$tmp/m" "ist --codec bf16-delta over MPI"
    "$twist" dp --mode allreduce "${common[@]}" --codec bf16 --out "$tmp/dt" >/dev/null
    timeout 300 mpirun -np 3 --oversubscribe "$twist" dp --mode allreduce "${common[@]}" \
        --codec bf16 --transport mpi --out "$tmp/dm" >/dev/null
    same_files "$tmp/dt" "$tmp/dm" "dp allreduce --codec bf16 over MPI"
    echo "mpirun -np 3: the coded runs equal the threads runs byte for byte"
    # Resume under MPI: every rank reads the tokenizer from --out, rank 0 the rest.
    local four=(--devices cpu --workers-per-device 3 --local-steps 2 --rounds 4 "${model[@]}")
    "$twist" ist --heads-per-worker 2 "${four[@]}" --out "$tmp/whole" >/dev/null
    timeout 300 mpirun -np 3 --oversubscribe "$twist" ist --heads-per-worker 2 "${four[@]}" \
        --transport mpi --out "$tmp/mr" --stop-after 2 >/dev/null
    timeout 300 mpirun -np 3 --oversubscribe "$twist" ist --heads-per-worker 2 "${four[@]}" \
        --transport mpi --out "$tmp/mr" --resume >/dev/null
    same_files "$tmp/whole" "$tmp/mr" "an MPI run stopped after round 2 and resumed"
    echo "mpirun -np 3: stopped after round 2 of 4 and resumed: the threads run's weights"
}

# expect_refusal NEEDLE ARGS...: a non-zero exit, NEEDLE on stderr.
expect_refusal() {
    local needle=$1 rc=0
    shift
    "$twist" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [[ $rc != 0 ]] || fail "twist $*: exit 0, expected a refusal"
    grep -qF -- "$needle" "$tmp/err" || { fail "twist $*: stderr lacks '$needle'"; cat "$tmp/err"; }
}

case_resume() {
    local common=(--devices cpu --workers-per-device 3 --local-steps 2 --rounds 4 "${model[@]}")
    local name args
    for name in ist dp-allreduce dp-localsgd ist-bf16; do
        case $name in
        ist) args=(ist --heads-per-worker 2) ;;
        dp-allreduce) args=(dp --mode allreduce) ;;
        dp-localsgd) args=(dp --mode localsgd) ;;
        ist-bf16) args=(ist --heads-per-worker 2 --codec bf16) ;;
        esac
        "$twist" "${args[@]}" "${common[@]}" --out "$tmp/$name-whole" >/dev/null
        "$twist" "${args[@]}" "${common[@]}" --out "$tmp/$name" --stop-after 2 >"$tmp/out"
        grep -q "stopped (--stop-after) after round 2 of 4" "$tmp/out" ||
            fail "$name: no line about the stop after round 2"
        "$twist" "${args[@]}" "${common[@]}" --out "$tmp/$name" --resume >"$tmp/out"
        grep -q "resumed $tmp/$name after round 2 of 4 (step 4, 3 of 3 workers alive)" \
            "$tmp/out" || { fail "$name: no 'resumed' line"; cat "$tmp/out"; }
        same_files "$tmp/$name-whole" "$tmp/$name" "$name stopped after round 2 and resumed"
        echo "ok   $name: stopped after round 2 of 4, resumed: the same weights and moments"
    done
    # A finished run says so; a conflicting flag is named; wrong uses are refused.
    # with ROUNDS K BATCH EMBD [OUT]: the resumed IST run's arguments with those values.
    with() {
        echo ist --heads-per-worker 2 --devices cpu --workers-per-device 3 --rounds "$1" \
            --local-steps "$2" --batch "$3" --embd "$4" --data "$corpus" --vocab 384 --preset \
            nano --layers 2 --heads 4 --seq-len 32 --eval-batches 4 --seed 7 --out "${5:-$tmp/ist}"
    }
    # shellcheck disable=SC2046 # the words of with() are meant to split (no spaces in $tmp)
    {
        expect_refusal "is finished: it has done 4 of 4 rounds; pass a larger --rounds" \
            $(with 4 2 4 64) --resume
        expect_refusal "--batch 8 conflicts with the checkpoint in $tmp/ist (batch 4)" \
            $(with 6 2 8 64) --warmup 0 --resume
        expect_refusal "--local-steps 3 conflicts" $(with 6 3 4 64) --warmup 0 --resume
        expect_refusal "--codec bf16-delta conflicts" $(with 6 2 4 64) --warmup 0 \
            --codec bf16-delta --resume
        expect_refusal "--embd 32 conflicts" $(with 6 2 4 32) --warmup 0 --resume
        expect_refusal "holds no checkpoint to continue" $(with 6 2 4 64 "$tmp/empty") --resume
        expect_refusal "--resume and --overwrite exclude each other" $(with 6 2 4 64) --resume \
            --overwrite
        # More rounds continue it, with the schedule recomputed (said).
        "$twist" $(with 5 2 4 64) --warmup 0 --resume >"$tmp/out" 2>&1 ||
            fail "--rounds 5 --resume: $(cat "$tmp/out")"
    }
    grep -q "learning-rate schedule is recomputed" "$tmp/out" ||
        fail "--rounds 5 --resume: no word about the schedule"
    expect_refusal "saved by a localsgd run, not allreduce" dp --mode allreduce "${common[@]}" \
        --out "$tmp/dp-localsgd" --resume
    # Usage errors name the flag (exit 2).
    local rc=0
    "$twist" ist --heads-per-worker 2 "${common[@]}" --codec zstd >/dev/null 2>"$tmp/err" || rc=$?
    if [[ $rc != 2 ]] || ! grep -q -- "--codec" "$tmp/err"; then fail "--codec zstd: exit $rc"; fi
    rc=0
    "$twist" ist --heads-per-worker 2 "${common[@]}" --resume >/dev/null 2>"$tmp/err" || rc=$?
    if [[ $rc != 2 ]] || ! grep -q -- "--resume needs --out" "$tmp/err"; then
        fail "--resume alone: exit $rc"
    fi
    # bf16-delta: its references are not saved, and the resume says so.
    "$twist" ist --heads-per-worker 2 "${common[@]}" --codec bf16-delta --out "$tmp/delta" \
        --stop-after 1 >/dev/null
    "$twist" ist --heads-per-worker 2 "${common[@]}" --codec bf16-delta --out "$tmp/delta" \
        --resume >"$tmp/out"
    grep -q "references and residuals are not in the checkpoint" "$tmp/out" ||
        fail "bf16-delta resume: no word about the codec state"
}

case "$case_name" in
codec | codec_mpi | resume) "case_$case_name" ;;
*) echo "unknown case $case_name" >&2; exit 2 ;;
esac
if ((failures)); then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "ok: $case_name"
