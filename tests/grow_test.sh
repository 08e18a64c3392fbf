#!/usr/bin/env bash
# `twist grow` and `twist train --init` end to end, on the CPU:
#   - every operator writes a checkpoint that twist eval opens; the exact ones (depth --identity,
#     combine and concat of copies of one model, double, widen to a multiple) give the source's
#     validation loss to the printed 4 decimals, and PyTorch (tools/torch_gpt2.py) gives the source's logits
#     from the grown checkpoint (when /usr/bin/python3 has torch; skipped visibly otherwise);
#   - train --init starts from a grown checkpoint, --init-optimizer carries double's AdamW state
#     and refuses a checkpoint without one;
#   - bad input (different tokenizers, widths or shapes, d1 < d0, heads that do not divide, a
#     damaged source, an --out that holds a checkpoint or other files) gives one message naming the file or flag, a
#     non-zero exit, and writes nothing.
# Usage: grow_test.sh PATH/TO/twist TOOLS_DIR
set -euo pipefail

twist=${1:?usage: grow_test.sh PATH/TO/twist TOOLS_DIR}
tools=${2:?usage: grow_test.sh PATH/TO/twist TOOLS_DIR}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cd "$tmp"

"$twist" data synth --level 0 --words 30000 --out corpus.txt >/dev/null
"$twist" data tokenizer --data corpus.txt --vocab 300 --out tok.json >/dev/null
"$twist" data tokenizer --data corpus.txt --vocab 280 --out tok280.json >/dev/null
small=(--device cpu --data corpus.txt --preset nano --layers 2 --embd 32 --heads 2 --seq-len 16
       --batch 4 --eval-batches 2 --log-every 100 --steps 6)
expect_ok train "${small[@]}" --tokenizer tok.json --out a
expect_ok train "${small[@]}" --tokenizer tok.json --seed 2 --out b
expect_ok train "${small[@]}" --tokenizer tok280.json --out other_tok

# ---- every operator -------------------------------------------------------------------------
expect_ok grow --from a --op depth --layers 6 --identity --out a_depth
expect_ok grow --from a --op depth --layers 4 --mode interleave --out a_inter
expect_ok grow --from a --from a --from a --op combine --out a_x3
expect_ok grow --from a --from b --op combine --out ab
grep -q "optimizer state reset" out || fail "combine does not say the optimizer state is reset"
expect_ok grow --from a --from a --op concat --out a_concat
expect_ok grow --from a --from b --op concat --out ab_concat
expect_ok grow --from a --op double --out a_double
grep -q "optimizer state carried" out || fail "double does not say the optimizer state is carried"
[[ -f a_double/optimizer.safetensors ]] || fail "double did not write the carried optimizer state"
expect_ok grow --from a --op widen --embd 64 --noise 0.05 --out a_widen
expect_ok grow --from a --op widen --embd 48 --out a_widen48 --json
grep -q '"event":"grow"' out || fail "grow --json wrote no grow record: $(cat out)"
expect_ok grow --from a --op widen --embd 32 --mlp 200 --out a_mlp200

source_loss=$(loss_of a)
for m in a_depth a_x3 a_concat a_double a_widen; do
    got=$(loss_of $m)
    [[ $got == "$source_loss" ]] || fail "$m: loss $got, the source's is $source_loss (exact operator)"
    echo "ok   $m: validation loss $got = source's $source_loss"
done
for m in a_inter ab ab_concat a_widen48; do
    got=$(loss_of $m)
    [[ -n $got ]] || fail "$m: twist eval gave no loss"
    echo "ok   $m: validation loss $got (approximate operator; source a: $source_loss)"
done

if /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; then
    /usr/bin/python3 - "$tools" a a_depth a_x3 a_concat a_double a_widen <<'PY' || fail "PyTorch: grown logits differ from the source's"
import sys
import torch
sys.path.insert(0, sys.argv[1])
from torch_gpt2 import load_twist_checkpoint
source = load_twist_checkpoint(sys.argv[2])
vocab = source.wte.shape[0]
tokens = torch.randint(0, vocab, (2, 16), generator=torch.Generator().manual_seed(3))
with torch.no_grad():
    want = source(tokens)
    bad = 0
    for d in sys.argv[3:]:
        got = load_twist_checkpoint(d)(tokens)
        diff = (got - want).abs().max().item()
        print(f"ok   PyTorch: {d} logits vs source: max |diff| {diff:.2e}")
        bad += diff > 1e-4
sys.exit(1 if bad else 0)
PY
else
    echo "SKIP: /usr/bin/python3 cannot import torch: grown checkpoints not opened in PyTorch"
fi

# ---- train --init ---------------------------------------------------------------------------
init=(--device cpu --data corpus.txt --batch 4 --eval-batches 2 --log-every 100 --steps 2)
expect_ok train "${init[@]}" --init ab --out ab_trained
grep -q "init: weights from ab" out || fail "train --init does not say where the weights came from"
expect_ok train "${init[@]}" --init a_double --init-optimizer --out double_trained
grep -q "init: weights and AdamW state from a_double" out || fail "--init-optimizer did not carry the state"
expect_fail "ab/optimizer.safetensors" ab_opt train "${init[@]}" --init ab --init-optimizer --out ab_opt
expect_fail "drop --embd" x train "${init[@]}" --init ab --embd 64 --out x
expect_fail "--init-optimizer needs --init" x train "${init[@]}" --init-optimizer --out x

# ---- bad input: one message, non-zero exit, nothing written ---------------------------------
expect_fail "tokenizer.json differs" bad1 grow --from a --from other_tok --op combine --out bad1
expect_fail "--embd 16 is smaller than n_embd 32 of a" bad2 grow --from a --op widen --embd 16 --out bad2
expect_fail "--op double grows n_embd 32 to exactly 64" bad3 grow --from a --op double --embd 48 --out bad3
expect_fail "--heads 4 does not divide --embd 48" bad4 grow --from a --op widen --embd 48 --heads 4 --out bad4
expect_fail "--layers 5 is not a multiple of the 2 layers of a" bad5 grow --from a --op depth --layers 5 --out bad5
expect_fail "source 1 has n_embd 64 but source 0 has 32" bad6 grow --from a --from a_double --op combine --out bad6
grep -q "1 = a_double" err || fail "combine error does not name the --from of source 1"
expect_fail "source 1's layer 0 (2 heads, 200 MLP units) differs" bad11 grow --from a --from a_mlp200 --op concat --out bad11
cp -r a damaged
printf 'XXXX' | dd of=damaged/model.safetensors bs=1 seek=200 conv=notrunc 2>/dev/null
expect_fail "damaged/model.safetensors" bad7 grow --from damaged --op double --out bad7
expect_fail "no such checkpoint directory" bad8 grow --from missing --op double --out bad8
before=$(cat a_double/checksums.json)
expect_fail "already holds a twist checkpoint" "" grow --from a --op double --out a_double
[[ $(cat a_double/checksums.json) == "$before" ]] || fail "a refused grow changed a_double"
mkdir notes && echo mine >notes/notes.txt
expect_fail "notes" "" grow --from a --op double --out notes
[[ $(ls notes) == notes.txt ]] || fail "a refused grow wrote into notes/"
expect_fail "--op combine needs 2 or more" bad9 grow --from a --op combine --out bad9
expect_fail "is also a --from" "" grow --from a --op double --out a
expect_fail "--from DIR is required" bad10 grow --op double --out bad10

if ((failures)); then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "grow CLI: all checks passed"
