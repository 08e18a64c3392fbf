#!/usr/bin/env bash
# `twist data encode` / `twist data decode`, and files that are not regular files: output paths
# that are devices or FIFOs are refused and left as they were (never renamed over), and a FIFO
# given as input (--data, a checkpoint file, the token cache) is refused at once instead of
# hanging. Every command runs under `timeout`, so a regression fails instead of hanging.
# Usage: cli_data_test.sh PATH/TO/twist TESTS_DATA_DIR
set -euo pipefail

twist=${1:?usage: cli_data_test.sh PATH/TO/twist TESTS_DATA_DIR}
data=${2:?usage: cli_data_test.sh PATH/TO/twist TESTS_DATA_DIR}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
limit=60 # seconds any one command may take: far more than it needs, far less than a hang

# Runs twist under `timeout` with stdin from $stdin (default /dev/null), capturing both streams.
stdin=/dev/null
run() {
    set +e
    timeout "$limit" "$twist" "$@" <"$stdin" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    set -e
    if ((rc == 124)); then fail "twist $*: still running after ${limit} s (hangs)"; fi
    if ((rc > 124)); then fail "twist $*: died with signal $((rc - 128))"; fi
    if grep -qE 'Sanitizer|runtime error:' "$tmp/err"; then
        fail "twist $*: sanitizer report"
        cat "$tmp/err" >&2
    fi
}

# expect_fail CODE NEEDLE ARGS...: exit code CODE, stderr mentions NEEDLE, nothing on stdout.
expect_fail() {
    local code=$1 needle=$2
    shift 2
    run "$@"
    if [[ $rc != "$code" ]]; then fail "twist $*: exit $rc, expected $code"; fi
    if ! grep -qF -- "$needle" "$tmp/err"; then
        fail "twist $*: stderr does not mention '$needle':"
        cat "$tmp/err" >&2
    fi
    if [[ -s $tmp/out ]]; then fail "twist $*: wrote to stdout on failure"; fi
    echo "ok   exit $rc  twist $*  ->  $(head -n 1 "$tmp/err")"
}

expect_ok() {
    run "$@"
    if [[ $rc != 0 ]]; then
        fail "twist $*: exit $rc"
        cat "$tmp/err" >&2
    fi
    echo "ok   exit 0  twist $*"
}

# is_type PATH TEST WHAT: PATH still passes `test TEST` (-p FIFO, -c character device).
is_type() {
    if ! test "$2" "$1"; then fail "$1 is no longer $3: $(ls -l "$1")"; fi
}

gpt2=$data/gpt2_5000.json
text=$data/multilingual.txt

# ---- encode / decode ----------------------------------------------------------------------
expect_ok data encode --tokenizer "$gpt2" --in "$text"
cp "$tmp/out" "$tmp/ids"
# The ids equal those recorded from Hugging Face tokenizers for the same file and text.
awk '$1 == "case" { name = substr($0, 6) }
     name == "multilingual.txt" && $1 == "ids" && $2 == "gpt2_5000.json" {
         for (i = 3; i <= NF; i++) print $i; exit }' "$data/hf_ids.txt" >"$tmp/hf_ids"
if [[ ! -s $tmp/hf_ids ]]; then fail "no recorded ids for multilingual.txt in $data/hf_ids.txt"; fi
cmp -s "$tmp/ids" "$tmp/hf_ids" ||
    fail "data encode: ids differ from Hugging Face's ($(wc -l <"$tmp/ids") vs $(wc -l <"$tmp/hf_ids") lines)"
grep -qvE '^[0-9]+$' "$tmp/ids" && fail "data encode: a line that is not one id"
stdin=$text expect_ok data encode --tokenizer "$gpt2"
cmp -s "$tmp/out" "$tmp/ids" || fail "data encode: stdin gives other ids than --in"
expect_ok data decode --tokenizer "$gpt2" --in "$tmp/ids"
cmp -s "$tmp/out" "$text" || fail "data decode: the text does not come back byte for byte"
# Any bytes round-trip (invalid UTF-8, NUL, CR), and ids may share a line.
printf 'caf\xc3\xa9 \xff\xfe\x80 \x00 \xe2\x82 \r\n\t“x”\n' >"$tmp/bytes"
stdin=$tmp/bytes expect_ok data encode --tokenizer "$gpt2"
tr '\n' ' ' <"$tmp/out" >"$tmp/ids_line"
stdin=$tmp/ids_line expect_ok data decode --tokenizer "$gpt2"
cmp -s "$tmp/out" "$tmp/bytes" || fail "data decode: invalid UTF-8 does not round-trip"
stdin=/dev/null expect_ok data encode --tokenizer "$gpt2"
[[ -s $tmp/out ]] && fail "data encode: empty input gave ids"
printf '39\n\n  2634 \n' >"$tmp/few"
expect_ok data decode --tokenizer "$gpt2" --in "$tmp/few"
printf 'H\xc3\xa9' | cmp -s - "$tmp/out" || fail "data decode 39 2634: '$(cat "$tmp/out")', expected Hé"

# Bad ids are named with their line; nothing is written.
printf '39\n2634\n5257\n' >"$tmp/bad"
expect_fail 1 "line 3: id 5257 is outside the vocabulary" data decode --tokenizer "$gpt2" --in "$tmp/bad"
printf '39 x12\n' >"$tmp/bad"
expect_fail 1 "line 1: 'x12' is not a token id" data decode --tokenizer "$gpt2" --in "$tmp/bad"
printf '39\n\n-1\n' >"$tmp/bad"
expect_fail 1 "line 3: '-1' is not a token id" data decode --tokenizer "$gpt2" --in "$tmp/bad"
printf '99999999999999999999\n' >"$tmp/bad"
expect_fail 1 "is outside the vocabulary" data decode --tokenizer "$gpt2" --in "$tmp/bad"
expect_fail 2 "missing required option --tokenizer" data encode --in "$text"
expect_fail 2 "unexpected argument" data decode --tokenizer "$gpt2" extra
expect_fail 1 "$tmp/none.txt" data encode --tokenizer "$gpt2" --in "$tmp/none.txt"
expect_fail 1 "$tmp/none.json" data decode --tokenizer "$tmp/none.json" --in "$tmp/ids"
head -c 100 "$gpt2" >"$tmp/bad_tok.json"
expect_fail 1 "bad_tok.json" data encode --tokenizer "$tmp/bad_tok.json" --in "$text"
if [[ -c /dev/full ]]; then
    run data encode --tokenizer "$gpt2" --in "$text"
    set +e
    timeout "$limit" "$twist" data encode --tokenizer "$gpt2" --in "$text" >/dev/full 2>"$tmp/err"
    rc=$?
    set -e
    [[ $rc == 1 ]] && grep -q "writing the output failed" "$tmp/err" ||
        fail "data encode >/dev/full: exit $rc, $(cat "$tmp/err")"
    echo "ok   exit $rc  twist data encode ... >/dev/full  ->  $(head -n 1 "$tmp/err")"
fi
for command in "data --help" "data encode --help" "data decode --help"; do
    # shellcheck disable=SC2086
    expect_ok $command
    grep -q "usage:" "$tmp/out" || fail "twist $command: no usage on stdout"
done

# ---- outputs that are not regular files (appendix 2) --------------------------------------
mkfifo "$tmp/fifo"
corpus=$tmp/corpus.txt
expect_ok data synth --level 0 --words 3000 --out "$corpus"
expect_fail 1 "is a FIFO, not a regular file" data synth --level 0 --words 100 --out "$tmp/fifo"
is_type "$tmp/fifo" -p "a FIFO"
expect_fail 1 "is a FIFO, not a regular file" data tokenizer --data "$corpus" --vocab 300 --out "$tmp/fifo"
is_type "$tmp/fifo" -p "a FIFO"
mkdir "$tmp/dir"
expect_fail 1 "is a directory, not a regular file" data synth --level 0 --words 100 --out "$tmp/dir"
ln -s "$tmp/fifo" "$tmp/link_to_fifo"
expect_fail 1 "is a FIFO, not a regular file" data tokenizer --data "$corpus" --vocab 300 --out "$tmp/link_to_fifo"
is_type "$tmp/fifo" -p "a FIFO"
# A character device: a node of our own (mknod needs root) so a regression cannot break /dev.
if mknod "$tmp/full" c 1 7 2>/dev/null; then
    expect_fail 1 "is a character device, not a regular file" data synth --level 0 --words 100 --out "$tmp/full"
    is_type "$tmp/full" -c "a character device"
    expect_fail 1 "is a character device, not a regular file" data tokenizer --data "$corpus" --vocab 300 --out "$tmp/full"
    is_type "$tmp/full" -c "a character device"
else
    echo "skip character-device output case: mknod needs root"
fi
if ls "$tmp"/*.tmp* >/dev/null 2>&1; then fail "a refused write left a temporary file: $(ls "$tmp")"; fi
expect_ok data tokenizer --data "$corpus" --vocab 300 --out "$tmp/tok.json"
expect_ok data synth --level 0 --words 100 --out "$tmp/again.txt"
expect_ok data synth --level 0 --words 200 --out "$tmp/again.txt" # a regular file is replaced

# ---- FIFOs given as input (appendix 3): refused at once, never waited on -------------------
mkfifo "$tmp/fifo_in" # a FIFO of its own, in case a regression above replaced the first one
expect_fail 1 "not a regular file (it is a FIFO)" data tokenizer --data "$tmp/fifo_in" --vocab 300 --out "$tmp/t.json"
expect_fail 1 "not a regular file (it is a FIFO)" data encode --tokenizer "$tmp/fifo_in" --in "$text"
small=(--device cpu --vocab 300 --preset nano --layers 1 --embd 32 --heads 2 --seq-len 16
       --batch 4 --eval-batches 1 --log-every 1)
expect_fail 1 "not a regular file (it is a FIFO)" train "${small[@]}" --data "$tmp/fifo_in" --steps 1 --out "$tmp/m0"
expect_fail 1 "not a regular file (it is a FIFO)" train "${small[@]}" --data "$corpus" --tokenizer "$tmp/fifo_in" --steps 1 --out "$tmp/m0"
# The token cache beside the corpus, replaced by a FIFO: ignored and left alone; the run goes on
# (caching in TWIST_CACHE_DIR instead).
export TWIST_CACHE_DIR=$tmp/cache
expect_ok train "${small[@]}" --data "$corpus" --steps 1 --out "$tmp/m1"
cache=$(ls "$corpus".*.twtok 2>/dev/null | head -n 1)
if [[ -n $cache ]]; then
    rm "$cache"
    mkfifo "$cache"
    expect_ok train "${small[@]}" --data "$corpus" --tokenizer "$tmp/m1/tokenizer.json" --steps 1 --out "$tmp/m2"
    is_type "$cache" -p "a FIFO"
    ls "$TWIST_CACHE_DIR"/*.twtok >/dev/null 2>&1 || fail "no cache written to TWIST_CACHE_DIR instead"
else
    fail "train wrote no token cache beside $corpus"
fi
# A checkpoint file replaced by a FIFO.
if [[ -f $tmp/m1/config.json ]]; then
    mv "$tmp/m1/config.json" "$tmp/config.json"
    mkfifo "$tmp/m1/config.json"
    expect_fail 1 "not a regular file (it is a FIFO)" eval --model "$tmp/m1" --data "$corpus" --device cpu
    expect_fail 1 "not a regular file (it is a FIFO)" sample --model "$tmp/m1" --tokens 2 --device cpu
    rm "$tmp/m1/config.json"
    mv "$tmp/config.json" "$tmp/m1/config.json"
    mv "$tmp/m1/model.safetensors" "$tmp/model.safetensors"
    mkfifo "$tmp/m1/model.safetensors"
    expect_fail 1 "not a regular file (it is a FIFO)" eval --model "$tmp/m1" --data "$corpus" --device cpu
    is_type "$tmp/m1/model.safetensors" -p "a FIFO"
else
    fail "train wrote no $tmp/m1/config.json: $(ls "$tmp/m1" 2>&1)"
fi

if ((failures)); then
    echo "cli_data_test: $failures failure(s)"
    exit 1
fi
echo "cli_data_test: all checks passed"
