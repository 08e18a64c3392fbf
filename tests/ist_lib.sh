# shellcheck shell=bash disable=SC2154,SC2034
# Sourced after lib.sh by the IST test scripts (ist_test.sh, ist_exchange_test.sh,
# memory_test.sh): a synthetic corpus in $tmp and `model`, the flags of a model small enough for
# lavapipe (2 layers, width 64, 4 heads, T 32, vocab 384: parameters, gradients and AdamW moments
# alone take 1.9 MiB); same_files compares two runs' saved tensors byte for byte.
corpus=$tmp/corpus.txt
"$twist" data synth --level 0 --words 20000 --out "$corpus" >/dev/null
model=(--data "$corpus" --vocab 384 --preset nano --layers 2 --embd 64 --heads 4 --seq-len 32
       --batch 4 --eval-batches 4 --seed 7)

same_files() { # DIR_A DIR_B WHAT
    local file
    for file in model.safetensors optimizer.safetensors; do
        cmp -s "$1/$file" "$2/$file" || fail "$3: $file differs from $1/$file"
    done
}

# Skips the test (exit 77) without mpirun; otherwise sets what mpirun needs here: running as root,
# more ranks than cores, components kept loaded so a sanitizer build can name (and suppress)
# their leaks, and the slow unwinder for Open MPI's leaks at exit, which come through frames
# without frame pointers (so the suppressions in tools/lib/lsan.supp can match their libraries).
use_mpirun() {
    if ! command -v mpirun >/dev/null 2>&1; then
        echo "skipped: mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)"
        exit 77
    fi
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
    export OMPI_MCA_mca_base_component_disable_dlclose=1
    export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}fast_unwind_on_malloc=0"
}
