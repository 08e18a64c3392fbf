#!/usr/bin/env bash
# tools/gpu-check (README, "Backend comparison on a GPU").
#   gpu_check_test.sh skip BUILD_DIR   with no GPU listed here: one line, exit 0, a "skipped"
#                                      JSON record; bad flags refused by name (one line, exit 2,
#                                      nothing written); then the whole check with --smoke on the
#                                      cpu device: every row filled from the commands' records,
#                                      the JSON Lines strict JSON with the records' figures;
#                                      and a hanging step under a 20 s budget (killed, the steps
#                                      after it skipped, exit 1)
#   gpu_check_test.sh render           the table and JSON of tests/data/gpu_check_fixture (made-up
#                                      figures, labelled FIXTURE): ratios to cuda:0, timeouts,
#                                      failures, budget cuts, the PyTorch peer, exit 1
set -euo pipefail

mode=${1:?usage: gpu_check_test.sh skip BUILD_DIR | render}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
check=$here/../tools/gpu-check
source "$here/lib.sh"

# want FILE TEXT: FILE holds TEXT (a fixed string).
want() {
    grep -qF -- "$2" "$1" || fail "$(basename "$1") lacks '$2'"
}

# strict_json FILE: every line parses with Python's json, NaN/Infinity refused (when python3 is
# here); prints the values of KEY=... checks given as python expressions over `records`.
strict_json() {
    local file=$1
    shift
    if ! command -v python3 >/dev/null 2>&1; then
        echo "note: python3 not found; $file not parsed strictly"
        return
    fi
    python3 - "$file" "$@" <<'PY' || fail "$1: not strict JSON Lines, or a check failed"
import json, sys
def reject(token): raise ValueError("not JSON: " + token)
records = [json.loads(line, parse_constant=reject) for line in open(sys.argv[1]) if line.strip()]
assert records, "no records"
for r in records:
    assert r.get("command") == "gpu-check" and r.get("event", "").startswith("gpu_check"), r
for expression in sys.argv[2:]:
    assert eval(expression), expression
print(f"ok   {len(records)} strict JSON record(s) in {sys.argv[1].rsplit('/', 1)[-1]}")
PY
}

if [[ $mode == render ]]; then
    cp -r "$here/data/gpu_check_fixture" "$tmp/run"
    rc=0
    "$check" --render "$tmp/run" --json "$tmp/out.jsonl" >"$tmp/table" 2>"$tmp/err" || rc=$?
    [[ $rc == 1 ]] || fail "render of the fixture (with failures): exit $rc, expected 1: $(cat "$tmp/err")"
    cmp -s "$tmp/table" "$tmp/run/table.md" || fail "the printed table is not table.md"
    t=$tmp/table
    want "$t" "**FIXTURE: made-up figures"
    want "$t" "| work | cuda:0 | opencl:0 | vulkan:0 |"
    want "$t" "| GEMM 4096^3 | 40.0 TFLOP/s (cuBLAS cublasSgemm (fixture): 40.0 TFLOP/s) | 20.0 TFLOP/s (0.50 of cuda:0) | 10.0 TFLOP/s (0.25 of cuda:0) |"
    want "$t" "| GEMM 1024^3 | 10.0 TFLOP/s (cuBLAS cublasSgemm (fixture): 10.0 TFLOP/s) | 5.0 TFLOP/s (0.50 of cuda:0) | skipped (time budget spent) |"
    want "$t" "| fused attention B=8 H=16 T=2048 D=64, fwd / bwd | 10.0 / 30.0 ms | 20.0 / 200 ms | timeout (60 s) |"
    want "$t" "| unfused attention, same shape, fwd / bwd | 5.00 / 15.0 ms | 30.0 / 180 ms | timeout (60 s) |"
    want "$t" "mem-efficient fwd / bwd; math fwd / bwd | 2.50 / 5.50; 8.00 / 13.0 ms (torch 0.0 (fixture)) | - | - |"
    want "$t" "| \`twist tune\` | nothing to tune | 12 classes (10 tuned now) in 19.5 s | timeout (60 s) |"
    want "$t" "| conformance suite | passed in 2.00 s | passed in 30.0 s | FAILED: 3 failure line(s) (logs/conformance-vulkan0.log) |"
    want "$t" "| \`bench step --preset tiny\` (B=16) | 500k tokens/s | 100k tokens/s (0.20 of cuda:0) | 25.0k tokens/s (0.05 of cuda:0) |"
    want "$t" "| \`bench step --preset small --batch 32\` | 200k tokens/s | 100k tokens/s (0.50 of cuda:0) | failed (exit 1, logs/step_small-vulkan0.log) |"
    want "$t" "Status: 5 step(s) failed, timed out or were cut by the budget"
    cmp -s "$tmp/out.jsonl" "$tmp/run/gpu-check.jsonl" || fail "--json FILE is not gpu-check.jsonl"
    strict_json "$tmp/out.jsonl" \
        'records[0]["event"] == "gpu_check" and records[0]["fixture"] is True' \
        'records[0]["status"] == "incomplete" and records[0]["devices"] == ["cuda:0", "opencl:0", "vulkan:0"]' \
        '[r["ratio_cuda"] for r in records if r.get("work") == "gemm_large" and "ratio_cuda" in r] == [0.5, 0.25]' \
        '[r["status"] for r in records if r.get("work") == "attention_fused"] == ["ok", "ok", "timeout"]' \
        '[r.get("efficient_bwd_ms") for r in records if r.get("work") == "sdpa"] == [5.5]' \
        '[r["tokens_per_s"] for r in records if r.get("work") == "step_small" and "tokens_per_s" in r] == [200000, 100000]'
    ((failures == 0)) && echo "gpu_check render: ok"
    exit $((failures > 0))
fi

build=${2:?usage: gpu_check_test.sh skip BUILD_DIR}
build=$(cd "$build" && pwd)
twist=$build/twist
[[ -x $twist ]] || { echo "skipped: no twist in $build"; exit 77; }

# Bad flags: one line on stderr naming the flag, exit 2, nothing written.
for bad in "--bogus" "--quick=1" "--json" "--budget 5" "--budget ten" "--out $tmp/a --out $tmp/b" \
    "--bin $tmp/none" "--render $tmp/none" "--render $here --quick" "--json $tmp/no/such/dir/x.jsonl" \
    "--devices nosuch:7 --out $tmp/bad-devices --bin $build"; do
    rc=0
    # shellcheck disable=SC2086 # $bad is several words
    "$check" $bad >"$tmp/out" 2>"$tmp/errb" || rc=$?
    if [[ $rc != 2 ]]; then
        fail "$bad: exit $rc, expected 2"
    elif [[ $(wc -l <"$tmp/errb") != 1 || -s $tmp/out ]]; then
        fail "$bad: want one line on stderr and nothing on stdout, got: $(cat "$tmp/errb" "$tmp/out")"
    else
        echo "ok   $bad refused: $(cat "$tmp/errb")"
    fi
done
[[ ! -e $tmp/a && ! -e $tmp/b && ! -e $tmp/no && ! -e $tmp/bad-devices ]] ||
    fail "a refused command wrote a directory"

# No GPU: one line, exit 0, a skipped record.
if "$twist" devices --no-measure --json 2>/dev/null | grep '"event":"device"' | grep -qv '"type":"cpu"'; then
    echo "note: this machine lists a GPU-type device: the no-GPU skip is not checked here"
else
    rc=0
    "$check" --bin "$build" --json "$tmp/skip.jsonl" >"$tmp/out" 2>&1 || rc=$?
    [[ $rc == 0 ]] || fail "no GPU: exit $rc, expected 0: $(cat "$tmp/out")"
    [[ $(wc -l <"$tmp/out") == 1 ]] || fail "no GPU: want one line, got: $(cat "$tmp/out")"
    want "$tmp/out" "gpu-check: no GPU here"
    echo "ok   no GPU: $(cat "$tmp/out")"
    strict_json "$tmp/skip.jsonl" 'records[0]["status"] == "skipped" and len(records) == 1'
fi

# The whole check on the cpu device at tiny shapes: real commands, real records.
rc=0
"$check" --bin "$build" --smoke --devices cpu --out "$tmp/run" --json "$tmp/run.jsonl" >"$tmp/table" 2>"$tmp/err" || rc=$?
[[ $rc == 0 ]] || { fail "--smoke --devices cpu: exit $rc"; cat "$tmp/err" "$tmp/table" >&2; }
t=$tmp/table
want "$t" "| work | cpu |"
want "$t" "Mode: smoke"
want "$t" "| \`twist tune\` | nothing to tune |"
want "$t" "| conformance suite | passed in "
want "$t" "Status: every step passed."
for row in 'GEMM 256\^3' 'GEMM 128\^3'; do
    grep -qE "^\| $row \| [0-9.]+ [GT]FLOP/s \|$" "$t" || fail "row '$row' has no figure"
done
grep -qE '^\| fused attention B=1 H=2 T=128 D=16, fwd / bwd \| [0-9.]+ / [0-9.]+ ms \|$' "$t" || fail "no fused attention figures"
grep -qE '^\| `bench step --preset small --batch 2` \| [0-9.]+k? tokens/s \|$' "$t" || fail "no step figure"
# The JSON's figures are the records' own.
gflops=$(sed 's/.*"twist":{[^}]*"gflops":\([0-9.e+-]*\).*/\1/' "$tmp/run/records/gemm_large-cpu.jsonl")
tokens=$(sed 's/.*"tokens_per_s":\([0-9.e+-]*\).*/\1/' "$tmp/run/records/step_tiny-cpu.jsonl")
strict_json "$tmp/run.jsonl" \
    'records[0]["fixture"] is False and records[0]["status"] == "ok" and records[0]["devices"] == ["cpu"]' \
    "[r['gflops'] for r in records if r.get('work') == 'gemm_large'] == [$gflops]" \
    "[r['tokens_per_s'] for r in records if r.get('work') == 'step_tiny'] == [$tokens]" \
    'all(r["status"] == "ok" for r in records[2:])'
for f in tune conformance gemm_large gemm_small attention step_tiny step_small; do
    [[ -s $tmp/run/logs/$f-cpu.log ]] || fail "no log of $f"
done
# A hanging step: a twist whose `bench attention` never ends, under a 20 s budget (--quick: no
# conformance suite). The step is killed at the time the budget leaves it, the two steps after it
# are skipped, the table says so (and counts 3 steps, not the suite --quick left out), exit 1.
mkdir -p "$tmp/hang"
printf '#!/usr/bin/env bash\nif [[ $1 == bench && $2 == attention ]]; then exec sleep 300; fi\nexec %q "$@"\n' \
    "$twist" >"$tmp/hang/twist"
chmod +x "$tmp/hang/twist"
ln -s "$build/tests/test_conformance" "$tmp/hang/test_conformance"
rc=0
start=$(date +%s)
"$check" --bin "$tmp/hang" --smoke --quick --devices cpu --budget 20 --out "$tmp/hung" >"$tmp/table" 2>"$tmp/err" || rc=$?
took=$(($(date +%s) - start))
[[ $rc == 1 ]] || fail "a hanging step: exit $rc, expected 1"
((took <= 30)) || fail "a 20 s budget took $took s"
grep -qE '^\| fused attention .* \| timeout \([0-9]+ s\) \|$' "$tmp/table" || fail "no timeout in the attention row"
want "$tmp/table" "| \`bench step --preset small --batch 2\` | skipped (time budget spent) |"
want "$tmp/table" "| conformance suite | not run (--quick) |"
want "$tmp/table" "Status: 3 step(s) failed, timed out or were cut by the budget"
((failures == 0)) || cat "$tmp/table" "$tmp/hung/steps.tsv" >&2
grep -q "attention-cpu: timeout" "$tmp/err" || fail "no progress line for the timeout: $(cat "$tmp/err")"
echo "ok   a hanging step: killed, later steps skipped, exit 1 in $took s"

((failures == 0)) && echo "gpu_check: ok"
exit $((failures > 0))
