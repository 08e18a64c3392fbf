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

# expect_refused_flags EXPERIMENT FLAGS...: each FLAGS string (word-split) makes the experiment
# script (run with --twist "$twist" and --out "$tmp/bad") exit non-zero with one line on stderr
# and write nothing.
expect_refused_flags() {
    local experiment=$1 bad
    shift
    for bad in "$@"; do
        # shellcheck disable=SC2086,SC2154 # $bad is several flags; $twist is the sourcing script's
        if "$experiment" --twist "$twist" $bad --out "$tmp/bad" >/dev/null 2>"$tmp/errb"; then
            fail "$bad should be refused"
        elif [[ $(wc -l <"$tmp/errb") != 1 ]] || [[ -e "$tmp/bad" ]]; then
            fail "$bad: want one message and nothing written, got: $(cat "$tmp/errb")"
        else
            echo "ok   $bad refused: $(cat "$tmp/errb")"
        fi
    done
}
