#!/usr/bin/env bash
# --profile FILE and `twist profile summary` as a user runs them (README "Profiling"):
#   - train, eval, bench step, ist and dp write a Chrome trace that Python's strict json loads,
#     with what Perfetto needs (traceEvents; "X" events with name, ph, ts, dur, pid, tid;
#     process_name / thread_name metadata), names by layer and role, FLOPs and bytes in args;
#     ist gives one track (tid) per worker; under mpirun each rank writes its own trace;
#   - profile summary prints the tables by op, layer and name; --json gives records;
#   - bad input: a missing trace, a JSON file that is no trace, an unwritable --profile path:
#     one message, exit 1, no partial file.
# Usage: profile_cli_test.sh PATH/TO/twist
set -euo pipefail

twist=${1:?usage: profile_cli_test.sh PATH/TO/twist}
if ! command -v python3 >/dev/null 2>&1; then
    echo "skipped: python3 is needed to parse the traces"
    exit 77
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cat >"$tmp/check_trace.py" <<'PY'
import json, sys

def reject(token):
    raise ValueError("not JSON: " + token)

path, min_tracks = sys.argv[1], int(sys.argv[2])
names_wanted = sys.argv[3].split(",") if len(sys.argv) > 3 and sys.argv[3] else []
trace = json.load(open(path), parse_constant=reject)
events = trace["traceEvents"]
assert isinstance(events, list) and events, "no traceEvents"
ops = [e for e in events if e["ph"] == "X" and e.get("cat") != "ist"]
spans = [e for e in events if e["ph"] == "X" and e.get("cat") == "ist"]
meta = [e for e in events if e["ph"] == "M"]
assert ops, "no X events"
for e in ops:
    for key in ("name", "ph", "ts", "dur", "pid", "tid", "args"):
        assert key in e, f"X event without {key}: {e}"
    assert isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float)), e
    assert e["dur"] >= 0 and e["ts"] >= 0, e
    assert isinstance(e["pid"], int) and isinstance(e["tid"], int), e
    for key in ("op", "flops", "bytes", "device_us", "host_us", "mem_bytes", "peak_mem_bytes"):
        assert key in e["args"], f"args without {key}: {e}"
tracks = {(e["pid"], e["tid"]) for e in ops}
named = {(e["pid"], e["tid"]) for e in meta if e["name"] == "thread_name"}
procs = {e["pid"] for e in meta if e["name"] == "process_name"}
assert tracks <= named, f"tracks without thread_name: {tracks - named}"
assert {p for p, _ in tracks} <= procs, "pids without process_name"
assert len(tracks) >= min_tracks, f"{len(tracks)} tracks, want >= {min_tracks}"
names = {e["name"] for e in ops}
missing = [n for n in names_wanted if n not in names]
assert not missing, f"names missing: {missing} (have e.g. {sorted(names)[:8]})"
# IST worker tracks (ist, dp): per worker send, compute, receive and merge spans of every round
want_workers = int(sys.argv[4]) if len(sys.argv) > 4 else 0
track_names = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta if e["name"] == "thread_name"}
kinds = {}
for e in spans:
    assert e["dur"] >= 0 and e["ts"] >= 0 and e["args"]["round"] >= 1, e
    kinds.setdefault(track_names[(e["pid"], e["tid"])], {}).setdefault(e["name"], set()).add(
        e["args"]["round"])
workers = [t for t in kinds if t.startswith("worker ")]
assert len(workers) == want_workers, f"{len(workers)} IST worker tracks, want {want_workers}"
rounds = {r for k in kinds.values() for rs in k.values() for r in rs}
for w in workers:
    for kind in ("send", "compute", "receive", "merge"):
        assert kinds[w].get(kind) == rounds, f"{w}: {kind} in rounds {kinds[w].get(kind)}"
if want_workers:
    assert {"extract", "merge", "eval"} <= set(kinds["master"]), kinds["master"]
print(f"ok   {path.rsplit('/', 1)[-1]}: {len(ops)} ops on {len(tracks)} track(s), "
      f"{len(workers)} IST worker track(s)")
PY

check_trace() { # FILE MIN_TRACKS NAMES
    python3 "$tmp/check_trace.py" "$@" || fail "trace $1"
}

run() { # NAME ARGS...: runs twist, fails on a non-zero exit or a sanitizer report
    local name=$1 rc=0
    shift
    "$twist" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || rc=$?
    ((rc == 0)) || { fail "twist $*: exit $rc"; cat "$tmp/$name.err" >&2; }
    if grep -qE 'Sanitizer|runtime error:' "$tmp/$name.err"; then fail "twist $*: sanitizer report"; fi
}

corpus=$tmp/corpus.txt
run synth data synth --level 0 --words 20000 --out "$corpus"
small=(--data "$corpus" --vocab 300 --preset nano --layers 2 --embd 32 --heads 2 --seq-len 16
       --batch 4 --eval-batches 2)
run train train --device cpu "${small[@]}" --steps 3 --out "$tmp/run" --profile "$tmp/train.json"
check_trace "$tmp/train.json" 1 \
    "block1.attn.qkv_gemm,block0.mlp.gelu_bwd,block0.attn.attention_fwd,lm_head.gemm,adamw.adamw_step,embed.embedding_bwd"
grep -q "written to $tmp/train.json" "$tmp/train.err" || fail "train --profile: no note of the trace"

run summary profile summary "$tmp/train.json"
for part in "device memory: cpu (track 1) peaked at" "by op:" "by layer:" "by name:" "gemm" "block1" "lm_head.gemm" "% peak"; do
    grep -q -- "$part" "$tmp/summary.out" || fail "profile summary lacks '$part'"
done
run summary_json profile summary "$tmp/train.json" --json
python3 - "$tmp/summary_json.out" <<'PY' || fail "profile summary --json"
import json, sys
records = [json.loads(l, parse_constant=lambda t: sys.exit("not JSON: " + t)) for l in open(sys.argv[1])]
assert all(r["event"] in ("profile_summary", "profile_memory", "profile_row") and r["command"] == "profile" for r in records)
memory = [r for r in records if r["event"] == "profile_memory"]
assert len(memory) == 1 and memory[0]["peak_bytes"] > 0, memory
rows = [r for r in records if r["event"] == "profile_row"]
groups = {r["group"] for r in rows}
assert groups == {"op", "layer", "name"}, groups
share = sum(r["share"] for r in rows if r["group"] == "op")
assert abs(share - 1) < 1e-6, share
print(f"ok   summary --json: {len(rows)} rows")
PY

run eval eval --model "$tmp/run" --data "$corpus" --device cpu --batches 2 --profile "$tmp/eval.json"
check_trace "$tmp/eval.json" 1 "block0.attn.qkv_gemm,lm_head.softmax_xent_fwd"
run step bench step --device cpu --preset nano --vocab 64 --batch 1 --seq-len 8 --steps 1 \
    --warmup 0 --rounds 1 --profile "$tmp/step.json"
check_trace "$tmp/step.json" 1 "lm_head.gemm"
dist=(--devices cpu --workers-per-device 2 --local-steps 1 --rounds 2 "${small[@]}")
run ist ist "${dist[@]}" --heads-per-worker 1 --out "$tmp/ist" --profile "$tmp/ist.json"
check_trace "$tmp/ist.json" 2 "block0.attn.qkv_gemm" 2
run dp dp "${dist[@]}" --mode localsgd --out "$tmp/dp" --profile "$tmp/dp.json"
check_trace "$tmp/dp.json" 2 "" 2

# Under mpirun every rank writes its own trace: rank 0 FILE, rank r FILE.rank<r>.
if command -v mpirun >/dev/null 2>&1 && "$twist" --version | grep -q "MPI transport: built"; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
    export OMPI_MCA_mca_base_component_disable_dlclose=1 # as in ist_test.sh, for sanitizer builds
    rc=0
    LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}fast_unwind_on_malloc=0" timeout 300 \
        mpirun -np 2 --oversubscribe "$twist" ist "${dist[@]}" --heads-per-worker 1 \
        --transport mpi --out "$tmp/mpi" --profile "$tmp/mpi.json" >"$tmp/mpi.out" 2>&1 || rc=$?
    ((rc == 0)) || { fail "mpirun ist --profile: exit $rc"; cat "$tmp/mpi.out" >&2; }
    check_trace "$tmp/mpi.json" 1 "block0.attn.qkv_gemm" 2
    check_trace "$tmp/mpi.json.rank1" 1 "block0.attn.qkv_gemm"
else
    echo "skip mpirun: no mpirun or no MPI transport in this twist"
fi

# Other devices when present: the same trace from opencl:0 and vulkan:0.
for spec in opencl:0 vulkan:0; do
    if ! "$twist" devices 2>/dev/null | grep -q "^ *$spec "; then
        echo "skip $spec: not listed by twist devices"
        continue
    fi
    tag=${spec/:/}
    run "train_$tag" train --device "$spec" "${small[@]}" --steps 1 --eval-every 0 \
        --out "$tmp/run_$tag" --profile "$tmp/$tag.json"
    check_trace "$tmp/$tag.json" 1 "block1.attn.qkv_gemm,lm_head.gemm"
done

# Bad input.
expect_error() { # NEEDLE ARGS...: exit 1 and a message with NEEDLE on stderr
    local needle=$1 rc=0
    shift
    "$twist" "$@" >"$tmp/bad.out" 2>"$tmp/bad.err" || rc=$?
    ((rc == 1)) || fail "twist $*: exit $rc, want 1"
    grep -q -- "$needle" "$tmp/bad.err" || { fail "twist $*: message lacks '$needle'"; cat "$tmp/bad.err" >&2; }
}
expect_error "cannot open $tmp/none.json" profile summary "$tmp/none.json"
echo '{"a": 1}' >"$tmp/other.json"
expect_error "not a twist trace" profile summary "$tmp/other.json"
mkdir "$tmp/ro" && chmod 500 "$tmp/ro"
if [[ $(id -u) != 0 ]]; then
    expect_error "cannot write the profile trace" bench step --device cpu --preset nano --vocab 64 \
        --batch 1 --seq-len 8 --steps 1 --warmup 0 --rounds 1 --profile "$tmp/ro/t.json"
    [[ -z $(ls -A "$tmp/ro") ]] || fail "a partial trace was left in $tmp/ro"
fi
expect_error "cannot write the profile trace" bench step --device cpu --preset nano --vocab 64 \
    --batch 1 --seq-len 8 --steps 1 --warmup 0 --rounds 1 --profile "$tmp/missing/dir/t.json"
rc=0
"$twist" profile summary >/dev/null 2>&1 || rc=$?
((rc == 2)) || fail "profile summary without a trace: exit $rc, want 2"

if ((failures)); then
    echo "$failures failure(s)"
    exit 1
fi
echo "profile_cli: all checks passed"
