#!/usr/bin/env bash
# Optional backends cost only themselves. twist does not link cuBLAS: the CUDA backend is a module
# (libtwist_cuda.so) that the registry loads on first enumeration. So under an address-space
# limit too small to map cuBLAS (ulimit -v 300000: about 293 MiB; cuBLAS alone maps over 700 MB)
# twist still starts, lists cpu, exits 0, and says why cuda is absent.
# Usage: lazy_backends_test.sh PATH/TO/twist
set -uo pipefail

twist=${1:?usage: lazy_backends_test.sh PATH/TO/twist}
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# AddressSanitizer reserves terabytes of shadow address space at start: no ASan program runs
# under ulimit -v at all.
# (Outputs are read whole before grep: with pipefail, grep -q closing the pipe early would make
# the writer's SIGPIPE the pipeline's status.)
libraries=$(ldd "$twist" 2>/dev/null)
if grep -q libasan <<<"$libraries"; then
    echo "SKIP: $twist is built with AddressSanitizer, which cannot start under ulimit -v"
    exit 77
fi

# twist's own dynamic dependencies leave out cuBLAS and the CUDA runtime.
needed=$(readelf -d "$twist" | grep NEEDED)
if grep -qiE 'cublas|cudart' <<<"$needed"; then
    fail "twist links CUDA libraries directly:"
    grep -iE 'cublas|cudart' <<<"$needed" >&2
else
    echo "ok   twist links neither cuBLAS nor the CUDA runtime"
fi

full=$("$twist" devices 2>&1) || fail "twist devices (no limit) exited $?: $full"

# The timeout turns a hang (OpenBLAS retrying a buffer it cannot map, finding 9) into a failure.
limited=$( (ulimit -v 300000 && timeout 120 "$twist" devices) 2>&1)
rc=$?
if [[ $rc != 0 ]]; then
    fail "twist devices under ulimit -v 300000 exited $rc:"
    echo "$limited" >&2
fi
grep -qE '^cpu ' <<<"$limited" || fail "twist devices under ulimit -v 300000 does not list cpu"
echo "ok   exit $rc  (ulimit -v 300000; twist devices) lists cpu"

# Where this twist has the CUDA backend, the limited run names it and says why it has no devices
# (the module could not be loaded, or the runtime found no GPU).
if grep -q '^backend cuda    built' <<<"$full"; then
    line=$(grep '^backend cuda' <<<"$limited")
    if [[ $line == *"built, but found no devices: "?* ]]; then
        echo "ok   $line"
    else
        fail "under ulimit -v 300000 the cuda line gives no reason: '$line'"
    fi
fi

if ((failures)); then
    echo "$failures failure(s)"
    exit 1
fi
echo "lazy backends: all checks passed"
