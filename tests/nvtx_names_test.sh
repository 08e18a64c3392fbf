#!/usr/bin/env bash
# The CUDA backend's NVTX ranges are named like the profiler's ops (README "Profiling"): every op
# of the X-macro list TW_BACKEND_OPS (include/twist/backend_support.h) that the CUDA backend
# implements opens the range "twist:<op>" (directly or through CUDA_OP(cu, "<op>", ...)), and no
# range has a name outside the list. A source check: it runs without a GPU.
# Usage: nvtx_names_test.sh SOURCE_DIR
set -euo pipefail
src=${1:?usage: nvtx_names_test.sh SOURCE_DIR}
if ! command -v python3 >/dev/null 2>&1; then
    echo "skipped: python3 is needed"
    exit 77
fi
python3 - "$src" <<'PY'
import re, sys, pathlib
src = pathlib.Path(sys.argv[1])
header = (src / "include/twist/backend_support.h").read_text()
block = header[header.index("#define TW_BACKEND_OPS"):]
block = block[:block.index("\n\n")]
ops = re.findall(r"X\(prefix,\s*([a-z_0-9]+)", block)
assert len(ops) > 10, ops
cuda = "".join(p.read_text() for p in (src / "backends/cuda").glob("*.c"))
ranges = set(re.findall(r'range_push\("twist:([a-z_0-9]+)"', cuda))
ranges |= set(re.findall(r'CUDA_OP\(cu,\s*"([a-z_0-9]+)"', cuda))
implemented = set(re.findall(r"^tw_status tw_cuda_([a-z_0-9]+)\(void \*context", cuda, re.M)) & set(ops)
missing = sorted(implemented - ranges)
stray = sorted(ranges - set(ops))
assert implemented, "no CUDA op implementations found"
assert not missing, f"CUDA ops without an NVTX range named like the op: {missing}"
assert not stray, f"NVTX ranges not named like any op: {stray}"
print(f"ok   {len(ranges)} NVTX ranges, one per CUDA op, named as the profiler names ops")
PY
