# shellcheck shell=bash
# Sourced by the test scripts: a scratch directory ($tmp) removed when the script exits, and
# fail(), which reports a failed check on stderr and counts it in $failures (each script ends by
# that count).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
