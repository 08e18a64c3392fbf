#!/usr/bin/env bash
# Records (twist/record.h, README "Records"): every command that reports numbers, run with
# --json (records on stdout instead of the text) and with --json=FILE (records appended to FILE,
# the text still printed), on tiny inputs. Every line must pass Python's strict JSON parser
# (NaN and Infinity refused), carry `event` and `command`, and use only the documented keys of
# its event; a diverged run (huge --lr, perplexity overflowing to inf) gives null, not inf.
# Writing records to /dev/full fails with a message and exit 1. Runs (train, ist, dp) leave
# metrics.jsonl and log.txt in their output directory, whole across saves and --resume.
# Usage: records_test.sh PATH/TO/twist
set -euo pipefail

twist=${1:?usage: records_test.sh PATH/TO/twist}
if ! command -v python3 >/dev/null 2>&1; then
    echo "skipped: python3 is needed to parse the records"
    exit 77
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The schema: for each event, the keys every record has and the keys it may have. Keys that
# name one quantity are the same in every command (loss, step, round, tokens_per_s, ...).
cat >"$tmp/check.py" <<'EOF'
import json, math, sys

COMMON = {"event", "command"}
SCHEMA = {  # event: (required, optional)
    "device": ({"device", "backend", "type", "device_name", "vendor", "driver", "compute_units",
                "memory_bytes", "peak_gflops", "peak_gflops_source", "peak_gbps",
                "peak_gbps_source"}, {"free_memory_bytes", "ops", "ops_error",
                                      "default_precision", "default_precision_reason"}),
    "backend": ({"backend", "built", "devices"}, {"no_device_reason"}),
    "bench": ({"device", "batch"},
              {"device_name", "m", "n", "k", "trans_a", "trans_b", "impl", "repeat", "flops",
               "twist", "also", "peer", "ratio", "max_abs_diff", "max_abs_c", "heads", "seq_len",
               "head_dim", "layout", "argument_bytes", "fused", "unfused", "against", "preset",
               "params", "vocab", "tokens_per_s", "pytorch_installed_tokens_per_s",
               "ratio_installed", "pytorch_tuned_tokens_per_s", "ratio_tuned", "dtype",
               "variant", "layers", "embd", "mlp", "precision", "peak_bytes",
               "pytorch_skipped"}),
    "data": ({"path"}, {"level", "words", "seed", "vocab", "merges", "corpus_files",
                        "elapsed_s"}),
    "step": ({"step", "steps", "loss", "accuracy", "lr", "grad_norm", "tokens_per_s",
              "elapsed_s"}, {"precision", "loss_scale", "skipped_steps"}),
    "eval": ({"split", "loss", "perplexity", "accuracy", "tokens"},
             {"step", "round", "elapsed_s"}),
    "save": ({"step", "path"}, set()),
    "profile_summary": ({"trace", "calls", "device_ms", "span_ms"}, set()),
    "profile_memory": ({"device", "pid", "tid", "peak_bytes"}, set()),
    "profile_row": ({"group", "key", "calls", "time_ms", "share", "mean_us", "flops", "bytes",
                     "gflops", "gbps", "peak_fraction"}, set()),
    "round": ({"mode", "round", "rounds", "step", "workers_in_round", "workers",
               "failed_workers", "phases_s", "per_worker", "bytes_round", "bytes_total", "loss",
               "elapsed_s", "bytes_sent", "bytes_received", "codec", "bytes_localsgd_fp32",
               "bytes_ratio_localsgd_fp32", "idle_fraction_max"}, set()),
    "tune": ({"device", "device_name", "driver", "retune", "tunable", "tune_s", "variants",
              "choices", "classes", "classes_tuned"}, set()),
}
# Old or ambiguous names that must not come back.
FORBIDDEN = {"val_loss", "train_loss", "val_perplexity", "spec", "seq", "bench", "median"}

def reject(token):
    raise ValueError("not JSON: " + token)

def walk(value, where):
    """Numbers finite (the parser already refused NaN/Infinity); forbidden keys anywhere."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in FORBIDDEN:
                raise ValueError(f"{where}: key '{key}' (not in the vocabulary)")
            walk(item, where + "." + key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            walk(item, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value}")

path, command, events = sys.argv[1], sys.argv[2], set(sys.argv[3].split(","))
seen = []
with open(path) as f:
    lines = [line for line in f if line.strip()]
if not lines:
    sys.exit(f"{path}: no records")
for number, line in enumerate(lines, 1):
    where = f"{path}:{number}"
    try:
        record = json.loads(line, parse_constant=reject)
    except ValueError as error:
        sys.exit(f"{where}: {error}: {line.strip()}")
    if not isinstance(record, dict):
        sys.exit(f"{where}: not an object")
    event, cmd = record.get("event"), record.get("command")
    if cmd != command:
        sys.exit(f"{where}: command {cmd!r}, expected {command!r}")
    if event not in events:
        sys.exit(f"{where}: event {event!r}, expected one of {sorted(events)}")
    required, optional = SCHEMA[event]
    keys = set(record) - COMMON
    if not required <= keys:
        sys.exit(f"{where}: {event} record lacks {sorted(required - keys)}")
    if not keys <= required | optional:
        sys.exit(f"{where}: {event} record has unknown keys {sorted(keys - required - optional)}")
    try:
        walk(record, where)
    except ValueError as error:
        sys.exit(str(error))
    if "round" in record and not 1 <= record["round"] <= record.get("rounds", record["round"]):
        sys.exit(f"{where}: round {record['round']} is not counted from 1")
    seen.append(event)
missing = events - set(seen)
if missing and "--all" in sys.argv:
    sys.exit(f"{path}: no {sorted(missing)} record")
print(f"ok   {len(lines)} record(s) of '{command}' in {path.rsplit('/', 1)[-1]}: "
      + ", ".join(sorted(set(seen))))
EOF

check() { # FILE COMMAND EVENTS [--all]
    python3 "$tmp/check.py" "$@" || fail "records of '$2' in $1"
}

# run_json NAME COMMAND EVENTS ARGS...: once with --json (records only on stdout) and once with
# --json=FILE (text on stdout, records in FILE).
run_json() {
    local name=$1 command=$2 events=$3 rc=0
    shift 3
    "$twist" "$@" --json >"$tmp/$name.stdout.jsonl" 2>"$tmp/$name.err" || rc=$?
    ((rc == 0)) || { fail "twist $* --json: exit $rc"; cat "$tmp/$name.err" >&2; }
    if grep -qE 'Sanitizer|runtime error:' "$tmp/$name.err"; then fail "twist $*: sanitizer report"; fi
    check "$tmp/$name.stdout.jsonl" "$command" "$events" --all
    rm -f "$tmp/$name.file.jsonl"
    rc=0
    # the runs' second pass writes into the first's checkpoint directory: only with --overwrite
    local again=()
    if [[ $command == train || $command == ist || $command == dp ]]; then again=(--overwrite); fi
    "$twist" "$@" "${again[@]}" --json="$tmp/$name.file.jsonl" >"$tmp/$name.text" 2>"$tmp/$name.err" || rc=$?
    ((rc == 0)) || { fail "twist $* --json=FILE: exit $rc"; cat "$tmp/$name.err" >&2; }
    check "$tmp/$name.file.jsonl" "$command" "$events" --all
    [[ -s $tmp/$name.text ]] || fail "twist $* --json=FILE printed no text"
    if grep -q '^{' "$tmp/$name.text"; then fail "twist $* --json=FILE printed records on stdout"; fi
}

corpus=$tmp/corpus.txt
run_json synth "data synth" data data synth --level 0 --words 20000 --out "$corpus"
run_json tokenizer "data tokenizer" data data tokenizer --data "$corpus" --vocab 300 --out "$tmp/tok.json"
run_json devices devices device,backend devices
TWIST_CACHE_DIR=$tmp/tune-cache run_json tune tune tune tune --device cpu --retune
grep -q '"device":"cpu"' "$tmp/devices.stdout.jsonl" || fail "devices: no cpu record"
run_json gemm "bench gemm" bench bench gemm --device cpu --m 16 --n 8 --k 4 --repeat 1 --peer
run_json attention "bench attention" bench bench attention --device cpu --batch 1 --heads 2 \
    --seq 8 --head-dim 4 --repeat 1
run_json step "bench step" bench bench step --device cpu --preset nano --vocab 64 --batch 1 \
    --seq-len 8 --steps 1 --warmup 0 --rounds 1
"$twist" bench step --device cpu --preset nano --vocab 64 --batch 1 --seq-len 8 --steps 1 \
    --warmup 0 --rounds 1 --profile "$tmp/step.trace.json" >/dev/null 2>&1 || fail "bench step --profile"
run_json profile profile profile_summary,profile_memory,profile_row profile summary "$tmp/step.trace.json"

small=(--device cpu --data "$corpus" --vocab 300 --preset nano --layers 1 --embd 32 --heads 2
       --seq-len 16 --batch 4 --eval-batches 2 --log-every 1)
run_json train train step,eval,save train "${small[@]}" --steps 2 --out "$tmp/train"
run_json eval eval eval eval --model "$tmp/train" --data "$corpus" --device cpu --batches 2
dist=(--devices cpu --workers-per-device 2 --local-steps 1 --rounds 2 --data "$corpus"
      --vocab 300 --preset nano --layers 1 --embd 32 --heads 2 --seq-len 16 --batch 4
      --eval-batches 2)
run_json ist ist round,eval,save ist "${dist[@]}" --heads-per-worker 1 --out "$tmp/ist"
run_json dp dp round,eval,save dp "${dist[@]}" --mode localsgd --out "$tmp/dp"
# the text's round numbers and the records' agree
grep -q '^round 2/2' "$tmp/ist.text" || fail "ist text does not count rounds from 1"
python3 -c 'import json, sys
rounds = [json.loads(l)["round"] for l in open(sys.argv[1]) if "\"round\"" in l]
sys.exit(0 if rounds == [1, 1, 2, 2] else "rounds: %s" % rounds)' "$tmp/ist.stdout.jsonl" ||
    fail "ist records do not count rounds 1, 2 (round and eval records)"

# --json=FILE appends: two runs, twice the records.
"$twist" devices --json="$tmp/twice.jsonl" >/dev/null
"$twist" devices --json "$tmp/twice.jsonl" >/dev/null # "--json FILE" is the same
[[ $(wc -l <"$tmp/twice.jsonl") == $((2 * $(wc -l <"$tmp/devices.file.jsonl"))) ]] ||
    fail "--json=FILE does not append"

# A diverged run: the perplexity overflows to inf, and the records say null.
"$twist" train "${small[@]}" --steps 2 --warmup 0 --lr 10 --eval-every 1 --out "$tmp/diverged" \
    --json >"$tmp/diverged.jsonl" 2>"$tmp/diverged.err" || fail "diverged train: exit $?"
"$twist" train "${small[@]}" --steps 2 --warmup 0 --lr 10 --eval-every 1 --out "$tmp/diverged2" \
    >"$tmp/diverged.text" 2>&1 || fail "diverged train (text): exit $?"
grep -q "perplexity inf" "$tmp/diverged.text" || fail "the diverged run's perplexity is finite; the test needs inf"
check "$tmp/diverged.jsonl" train step,eval,save --all
grep -q '"perplexity":null' "$tmp/diverged.jsonl" || fail "diverged run: no null perplexity"
"$twist" eval --model "$tmp/diverged" --data "$corpus" --device cpu --batches 2 --json \
    >"$tmp/diverged-eval.jsonl" || fail "eval of the diverged model: exit $?"
check "$tmp/diverged-eval.jsonl" eval eval --all

# Write errors (appendix 14): exit 1 and a message naming the file; a run still saves.
for args in "devices" "bench gemm --device cpu --m 4 --n 4 --k 4 --repeat 1" \
    "train ${small[*]} --steps 1 --out $tmp/full-train" \
    "ist ${dist[*]} --heads-per-worker 1 --out $tmp/full-ist"; do
    rc=0
    # shellcheck disable=SC2086
    "$twist" $args --json=/dev/full >/dev/null 2>"$tmp/full.err" || rc=$?
    if [[ $rc != 1 ]]; then
        fail "twist $args --json=/dev/full: exit $rc, expected 1"
    elif ! grep -q "/dev/full: cannot write" "$tmp/full.err"; then
        fail "twist $args --json=/dev/full: no message naming /dev/full: $(cat "$tmp/full.err")"
    else
        echo "ok   exit $rc  twist ${args%% --*} --json=/dev/full  ->  $(head -n 1 "$tmp/full.err")"
    fi
done
rc=0
"$twist" devices >/dev/full 2>"$tmp/full.err" || rc=$?
[[ $rc == 1 ]] && grep -q "standard output: cannot write" "$tmp/full.err" ||
    fail "twist devices >/dev/full: exit $rc: $(cat "$tmp/full.err")"
[[ -f $tmp/full-train/model.safetensors && -f $tmp/full-ist/model.safetensors ]] ||
    fail "a run whose records cannot be written did not save its checkpoint"

# Run directories: metrics.jsonl (the records) and log.txt (the text, no carriage returns).
for run in train ist dp; do
    dir=$tmp/$run
    for file in metrics.jsonl log.txt; do
        [[ -s $dir/$file ]] || fail "$run: no $file in the output directory"
    done
    command=$run
    events=step,eval,save
    [[ $run == train ]] || events=round,eval,save
    check "$dir/metrics.jsonl" "$command" "$events" --all
    if grep -q $'\r' "$dir/log.txt"; then fail "$run: log.txt holds carriage returns"; fi
done
grep -q "^step 2/2  loss" "$tmp/train/log.txt" || fail "train log.txt lacks the step lines"
grep -q "^round 2/2" "$tmp/ist/log.txt" || fail "ist log.txt lacks the round lines"
# Saves along the way and a resume: the files hold the whole history, and no checkpoint
# leftovers (DIR.old-PID) stay behind.
"$twist" train "${small[@]}" --steps 6 --stop-after 3 --save-every 1 --out "$tmp/long" >/dev/null ||
    fail "train with a save every step: exit $?"
"$twist" train --out "$tmp/long" --resume --log-every 1 >/dev/null || fail "resume: exit $?"
python3 -c 'import json, sys
steps = [r["step"] for r in map(json.loads, open(sys.argv[1])) if r["event"] == "step"]
sys.exit(0 if steps == [1, 2, 3, 4, 5, 6] else "steps: %s" % steps)' "$tmp/long/metrics.jsonl" ||
    fail "metrics.jsonl after saves and a resume does not hold steps 1 to 6"
[[ $(grep -c '^step [0-9]*/6  loss' "$tmp/long/log.txt") == 6 ]] ||
    fail "log.txt after saves and a resume does not hold the 6 step lines"
grep -q "^resumed" "$tmp/long/log.txt" || fail "log.txt does not say the run was resumed"
leftovers=$(find "$tmp" -maxdepth 1 \( -name '*.old-*' -o -name '*.tmp-*' \))
[[ -z $leftovers ]] || fail "leftover directories: $leftovers"

# twist --version: the CMake project version and the backends built.
"$twist" --version >"$tmp/version" || fail "twist --version: exit $?"
grep -qE '^twist [0-9]+\.[0-9]+\.[0-9]+' "$tmp/version" || fail "twist --version: $(cat "$tmp/version")"
grep -q '^backends built: cpu' "$tmp/version" || fail "twist --version does not list the cpu backend"
"$twist" version | cmp -s - "$tmp/version" || fail "twist version differs from twist --version"

if ((failures)); then
    echo "records_test: $failures failure(s)"
    exit 1
fi
echo "records_test: all checks passed"
