#!/usr/bin/env bash
# Device peaks (README "Profiling", twist/peak.h): with an empty cache, `twist devices
# --no-measure` shows "?" for the cpu's peaks; `twist devices` measures them once (a note on
# stderr), caches them in $TWIST_CACHE_DIR/peaks.json and labels them "measured"; the next
# listing reads the cache (no note, the same numbers); a --profile trace then carries the peak
# and its source, and `twist profile summary` prints a % of peak for the cpu's GEMMs.
# Usage: device_peaks_test.sh PATH/TO/twist
set -euo pipefail
twist=${1:?usage: device_peaks_test.sh PATH/TO/twist}
if ! command -v python3 >/dev/null 2>&1; then
    echo "skipped: python3 is needed"
    exit 77
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export TWIST_CACHE_DIR=$tmp/cache
cd "$tmp"

"$twist" devices --no-measure >plain.out 2>plain.err || fail "devices --no-measure"
awk '$1 == "cpu" { exit !($(NF) == "?" && $(NF-1) == "?") }' plain.out ||
    fail "cpu peaks before measuring: $(grep '^cpu' plain.out)"
[[ ! -e $TWIST_CACHE_DIR/peaks.json ]] || fail "--no-measure wrote the cache"

"$twist" devices >first.out 2>first.err || fail "devices: $(cat first.err)"
grep -q "measuring the peak GFLOP/s and GB/s of cpu once" first.err || fail "no note of measuring"
grep -qE '^cpu .* [0-9.]+ measured +[0-9.]+ measured$' first.out ||
    fail "cpu peaks not measured: $(grep '^cpu' first.out)"
"$twist" devices --json >second.out 2>second.err || fail "devices --json"
if grep -q "measuring" second.err; then fail "measured again despite the cache"; fi
python3 - "$TWIST_CACHE_DIR/peaks.json" second.out <<'PY' || fail "cache and records disagree"
import json, sys
cache = json.load(open(sys.argv[1]))["devices"]
cpu = [json.loads(l) for l in open(sys.argv[2]) if '"device":"cpu"' in l][0]
entry = [e for e in cache if e["backend"] == "cpu" and e["name"] == cpu["device_name"]][0]
assert entry["gflops"] > 0 and entry["gbps"] > 0, entry
assert abs(cpu["peak_gflops"] - entry["gflops"]) < 1e-6 * entry["gflops"], (cpu, entry)
assert abs(cpu["peak_gbps"] - entry["gbps"]) < 1e-6 * entry["gbps"], (cpu, entry)
assert cpu["peak_gflops_source"] == cpu["peak_gbps_source"] == "measured", cpu
print(f"ok   cpu measured once: {entry['gflops']:.1f} GFLOP/s, {entry['gbps']:.1f} GB/s")
PY

"$twist" bench step --device cpu --preset nano --vocab 64 --batch 1 --seq-len 8 --steps 1 \
    --warmup 0 --rounds 1 --profile step.json >/dev/null 2>&1 || fail "bench step --profile"
python3 - step.json "$TWIST_CACHE_DIR/peaks.json" <<'PY' || fail "trace peaks"
import json, sys
trace = json.load(open(sys.argv[1]))
cache = {e["backend"]: e for e in json.load(open(sys.argv[2]))["devices"]}
d = trace["twistDevices"][0]
assert d["peak_gflops_source"] == "measured" and abs(d["peak_gflops"] / cache["cpu"]["gflops"] - 1) < 1e-5, d
gemm = [e for e in trace["traceEvents"] if e.get("ph") == "X" and e["args"]["op"] == "gemm"][0]
a = gemm["args"]
assert abs(a["peak_fraction"] - a["gflops"] / d["peak_gflops"]) < 1e-3 * a["peak_fraction"] + 1e-9, a
PY
"$twist" profile summary step.json >summary.out 2>&1 || fail "profile summary"
awk '$1 == "gemm" && $NF ~ /^[0-9.]+$/ { found = 1 } END { exit !found }' summary.out ||
    fail "no % of peak for gemm: $(grep -m1 '^ *gemm' summary.out)"
exit "$failures"
