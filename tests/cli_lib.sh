# shellcheck shell=bash disable=SC2154,SC2034
# Sourced after lib.sh by the CLI tests of grow and extract: run() runs twist with stdout and
# stderr in ./out and ./err (exit status in $rc; a signal or a sanitizer report fails the check),
# expect_ok, expect_fail and loss_of.

run() {
    set +e
    "$twist" "$@" >out 2>err
    rc=$?
    set -e
    if ((rc >= 128)); then fail "twist $* died with signal $((rc - 128))"; fi
    if grep -qE 'Sanitizer|runtime error:' err; then fail "twist $*: sanitizer report"; cat err >&2; fi
}

expect_ok() {
    run "$@"
    if [[ $rc != 0 ]]; then fail "twist $*: exit $rc"; cat err >&2; fi
    echo "ok   twist $*"
}

# expect_fail NEEDLE OUT ARGS...: non-zero exit, one stderr line mentioning NEEDLE, OUT absent.
expect_fail() {
    local needle=$1 out=$2
    shift 2
    run "$@"
    if [[ $rc == 0 ]]; then fail "twist $*: exit 0, expected a failure"; fi
    if ! grep -qF -- "$needle" err; then fail "twist $*: stderr does not mention '$needle':"; cat err >&2; fi
    if [[ $(grep -vc '^(run ' err) != 1 ]]; then fail "twist $*: not one message:"; cat err >&2; fi
    if [[ -n $out && -e $out ]]; then fail "twist $*: wrote $out"; fi
    echo "ok   exit $rc  twist $*  ->  $(head -n 1 err)"
}

loss_of() { # the validation loss twist eval prints for a checkpoint
    "$twist" eval --model "$1" --data corpus.txt --device cpu | sed -n 's/.*loss \([0-9.]*\),.*/\1/p'
}
