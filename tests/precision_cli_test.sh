#!/usr/bin/env bash
# --precision and --save-dtype end to end on the CPU:
#   - a bf16 run saved with --save-dtype bf16 has a model.safetensors of BF16 tensors at about half
#     the size of an fp32 save, twist eval opens it (in bf16 and fp32), and stopping after 2 steps
#     and resuming (precision from state.json, fp32 masters from optimizer.safetensors) ends with
#     the same files, bit for bit, as the uninterrupted run;
#   - an fp16 run's step records carry loss_scale and skipped_steps; a run whose fp16 gradients
#     overflow skips those steps (logged, counted), halves the scale and goes on;
#   - bad values of --precision and --save-dtype (train, eval, ist, dp, bench step) and a resume
#     asking another precision are refused with one message naming the flag, writing nothing.
# Usage: precision_cli_test.sh PATH/TO/twist
set -euo pipefail

twist=${1:?usage: precision_cli_test.sh PATH/TO/twist}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cd "$tmp"

"$twist" data synth --level 0 --words 20000 --out corpus.txt >/dev/null
model=(--device cpu --data corpus.txt --vocab 300 --layers 2 --embd 32 --heads 2 --seq-len 16
       --batch 4 --eval-batches 2 --log-every 1 --eval-every 0 --save-every 0)

# ---- bf16, saved as bf16, resumed ---------------------------------------------------------------
expect_ok train "${model[@]}" --steps 4 --precision bf16 --save-dtype bf16 --out whole
grep -q "precision: bf16" out || fail "the run does not say its precision"
expect_ok train "${model[@]}" --steps 4 --precision bf16 --save-dtype bf16 --stop-after 2 --out split
expect_ok train --out split --resume --save-dtype bf16
for file in model.safetensors optimizer.safetensors; do
    cmp -s whole/$file split/$file || fail "bf16 run resumed after 2 steps: $file differs"
done
echo "ok   a resumed bf16 run ends bit for bit as the uninterrupted one"
expect_ok train "${model[@]}" --steps 1 --out fp32save
python3 - whole fp32save <<'PY' || fail "model.safetensors is not a half-size BF16 file"
import json, os, struct, sys
def dtypes(d):
    blob = open(d + "/model.safetensors", "rb").read()
    head = json.loads(blob[8:8 + struct.unpack("<Q", blob[:8])[0]])
    head.pop("__metadata__", None)
    return {v["dtype"] for v in head.values()}
half, full = (os.path.getsize(d + "/model.safetensors") for d in sys.argv[1:3])
assert dtypes(sys.argv[1]) == {"BF16"} and dtypes(sys.argv[2]) == {"F32"}, "dtypes"
assert half < 0.55 * full, f"{half} bytes vs {full}"
print(f"ok   BF16 model.safetensors: {half} bytes, fp32: {full} ({half / full:.3f})")
PY
expect_ok eval --model whole --data corpus.txt --device cpu --precision bf16 --batches 2
grep -q "precision: bf16" out || fail "eval --precision bf16 does not say so"
expect_ok eval --model whole --data corpus.txt --device cpu --batches 2

# ---- fp16: the loss scaler in the records -------------------------------------------------------
expect_ok train "${model[@]}" --steps 2 --precision fp16 --out half --json
python3 - <<'PY' || fail "fp16 step records lack loss_scale / skipped_steps"
import json
steps = [r for r in map(json.loads, open("out")) if r.get("event") == "step"]
assert steps and all(r["precision"] == "fp16" and r["loss_scale"] > 0 and
                     r["skipped_steps"] >= 0 for r in steps), steps
print(f"ok   fp16 step records: loss_scale {steps[-1]['loss_scale']}, skipped_steps "
      f"{steps[-1]['skipped_steps']}")
PY

# A learning rate high enough that the fp16 gradients overflow at the initial scale (2^16) here:
# the steps are skipped, logged and counted, the scale halves, and the run goes on.
expect_ok train --device cpu --data corpus.txt --vocab 300 --layers 2 --embd 32 --heads 2 \
    --seq-len 8 --batch 1 --eval-batches 1 --log-every 1 --steps 10 --lr 0.5 --precision fp16 \
    --out overflow
grep -q "update skipped, loss scale now 32768" out || fail "no skipped step logged"
python3 - <<'PY' || fail "skipped steps not counted in metrics.jsonl"
import json
steps = [r for r in map(json.loads, open("overflow/metrics.jsonl")) if r.get("event") == "step"]
last = steps[-1]
assert last["step"] == 10 and last["skipped_steps"] >= 1 and last["loss_scale"] < 65536, last
print(f"ok   fp16 overflow: {last['skipped_steps']} step(s) skipped, loss scale {last['loss_scale']}")
PY

# ---- refused ------------------------------------------------------------------------------------
expect_fail "--precision" bad train "${model[@]}" --steps 1 --precision bf17 --out bad
expect_fail "--save-dtype" bad train "${model[@]}" --steps 1 --save-dtype fp16 --out bad
expect_fail "--precision" "" eval --model whole --data corpus.txt --precision half
expect_fail "--precision" bad ist --heads-per-worker 2 --precision fp8 --out bad
expect_fail "--precision" bad dp --mode allreduce --precision fp8 --out bad
expect_fail "--precision" "" bench step --device cpu --precision 16
expect_fail "--precision fp32 conflicts" "" train --out whole --resume --precision fp32 --steps 6

exit $((failures > 0))
