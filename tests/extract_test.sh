#!/usr/bin/env bash
# `twist extract` end to end, on the CPU:
#   - keeping every head and unit (any --scale) writes the source's config and tensors bit for bit (so the same
#     logits) and twist eval gives the same loss;
#   - a cut (2 of 4 heads, 64 of 128 units) keeps exactly the top heads and units by the stated
#     importance score (recomputed here in Python from the safetensors bytes), twist eval opens
#     it, and PyTorch (tools/torch_gpt2.py) opens it and gives the logits of the source with the
#     dropped heads' and units' output rows zeroed and the block scales times H/K and M/m
#     (--scale subnet) or unchanged (--scale keep); --scale mass multiplies by all / kept importance (when /usr/bin/python3 has torch);
#   - --select random: the same seed gives the same draw, another seed another;
#   - tools/experiments/extract at tiny sizes writes the curve's table, JSON and SVG;
#   - bad input (K above a layer's heads, M above its units, a damaged model, a non-empty --out,
#     --out = --model) gives one message naming the flag or file, a non-zero exit, and writes
#     nothing.
# Usage: extract_test.sh PATH/TO/twist TOOLS_DIR
set -euo pipefail

twist=${1:?usage: extract_test.sh PATH/TO/twist TOOLS_DIR}
tools=${2:?usage: extract_test.sh PATH/TO/twist TOOLS_DIR}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
cd "$tmp"

"$twist" data synth --level 0 --words 30000 --out corpus.txt >/dev/null
expect_ok train --device cpu --data corpus.txt --vocab 300 --preset nano --layers 2 --embd 32 \
    --heads 4 --seq-len 16 --batch 4 --eval-batches 2 --log-every 100 --steps 30 --out src

# ---- keep everything: the same model --------------------------------------------------------
expect_ok extract --model src --heads 4 --mlp 128 --out all
expect_ok extract --model src --heads 4 --mlp 128 --out all_mass --scale mass
for all in all all_mass; do
python3 - src $all <<'PY' || fail "extracting everything changed the model ($all)"
import json, struct, sys
def tensors(d):
    blob = open(d + "/model.safetensors", "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    head = json.loads(blob[8:8 + n])
    head.pop("__metadata__", None)
    return {k: (v["shape"], blob[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in head.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
for k in a:
    assert a[k] == b[k], k
ca = json.load(open(sys.argv[1] + "/config.json"))
cb = json.load(open(sys.argv[2] + "/config.json"))
assert ca == cb, (ca, cb)
print("ok   keep everything (%s): config.json and all %d tensors equal the source's bit for bit"
      % (sys.argv[2], len(a)))
PY
done
want=$(loss_of src)
got=$(loss_of all)
[[ -n $want && $got == "$want" ]] || fail "keep everything: loss $got, the source's is $want"
echo "ok   keep everything: validation loss $got = source's $want"

# ---- a cut: the top heads and units by the stated score ------------------------------------
expect_ok extract --model src --heads 2 --mlp 64 --out cut --json=cut.json
expect_ok extract --model src --heads 2 --mlp 64 --out cut_keep --scale keep --json=keep.json
expect_ok extract --model src --heads 2 --mlp 64 --out cut_mass --scale mass --json=mass.json
got=$(loss_of cut)
[[ -n $got ]] || fail "twist eval did not open the cut model"
echo "ok   cut (2 of 4 heads, 64 of 128 units): validation loss $got (source $want)"
python3 - src cut cut.json cut_mass <<'PY' || fail "the kept heads/units are not the top ones by the score"
import json, math, struct, sys
def tensors(d):
    blob = open(d + "/model.safetensors", "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    head = json.loads(blob[8:8 + n])
    head.pop("__metadata__", None)
    out = {}
    for k, v in head.items():
        raw = blob[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
        out[k] = (v["shape"], struct.unpack("<%df" % (len(raw) // 4), raw))
    return out
src = tensors(sys.argv[1])
cfg = json.load(open(sys.argv[1] + "/config.json"))
C, D = cfg["n_embd"], cfg["twist"]["head_dim"]
rec = json.loads(open(sys.argv[3]).read().splitlines()[-1])
for l, layer in enumerate(cfg["twist"]["layers"]):
    H, M = layer["heads"], layer["mlp_hidden"]
    A = H * D
    p = "transformer.h.%d." % l
    w, b = src[p + "attn.c_attn.weight"][1], src[p + "attn.c_attn.bias"][1]
    o = src[p + "attn.c_proj.weight"][1]
    fc, fb = src[p + "mlp.c_fc.weight"][1], src[p + "mlp.c_fc.bias"][1]
    mp = src[p + "mlp.c_proj.weight"][1]
    hs = []
    for h in range(H):
        cols = range(2 * A + h * D, 2 * A + (h + 1) * D)
        i = sum(w[r * 3 * A + c] ** 2 for r in range(C) for c in cols) + sum(b[c] ** 2 for c in cols)
        out = sum(o[r * C + c] ** 2 for r in range(h * D, (h + 1) * D) for c in range(C))
        hs.append(math.sqrt(i) * math.sqrt(out))
    us = []
    for u in range(M):
        i = sum(fc[r * M + u] ** 2 for r in range(C)) + fb[u] ** 2
        out = sum(mp[u * C + c] ** 2 for c in range(C))
        us.append(math.sqrt(i) * math.sqrt(out))
    top_h = sorted(sorted(range(H), key=lambda h: -hs[h])[:2])
    top_u = sorted(sorted(range(M), key=lambda u: -us[u])[:64])
    assert rec["kept"][l]["heads"] == top_h, (l, rec["kept"][l]["heads"], top_h)
    assert rec["kept"][l]["units"] == top_u, (l, rec["kept"][l]["units"], top_u)
    # --scale mass: the source's scale (1 here) times all / kept importance
    mass = json.load(open(sys.argv[4] + "/config.json"))["twist"]["layers"][l]
    want_a = sum(hs) / sum(hs[h] for h in top_h)
    want_m = sum(us) / sum(us[u] for u in top_u)
    assert abs(mass["attn_scale"] - want_a) <= 1e-6 * want_a, (l, mass, want_a)
    assert abs(mass["mlp_scale"] - want_m) <= 1e-6 * want_m, (l, mass, want_m)
cut = json.load(open(sys.argv[2] + "/config.json"))["twist"]["layers"]
for l, layer in enumerate(cut):
    assert layer["heads"] == 2 and layer["mlp_hidden"] == 64, layer
    assert layer["attn_scale"] == 2.0 and layer["mlp_scale"] == 2.0, layer
print("ok   kept heads and units are the top ones by |W_V||W_O| and |W_fc,b_fc||W_proj|, "
      "scales x2 (1/p), --scale mass x all/kept importance")
PY

if /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; then
    /usr/bin/python3 - "$tools" src cut cut.json cut_keep keep.json <<'PY' || fail "PyTorch: the cut model is not the source without the dropped heads and units"
import json, sys
import torch
sys.path.insert(0, sys.argv[1])
from torch_gpt2 import load_twist_checkpoint
tokens = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(3))
bad = 0
for cut_dir, rec_file, rescale in ((sys.argv[3], sys.argv[4], True), (sys.argv[5], sys.argv[6], False)):
    kept = json.loads(open(rec_file).read().splitlines()[-1])["kept"]
    ref = load_twist_checkpoint(sys.argv[2])
    with torch.no_grad():
        for block, k in zip(ref.blocks, kept):
            D = block.head_dim
            for h in range(block.heads):
                if h not in k["heads"]:
                    block.attn_proj_weight[h * D:(h + 1) * D, :] = 0
            drop = [u for u in range(block.c_fc_weight.shape[1]) if u not in k["units"]]
            block.mlp_proj_weight[drop, :] = 0
            if rescale:
                block.attn_scale *= block.heads / len(k["heads"])
                block.mlp_scale *= block.c_fc_weight.shape[1] / len(k["units"])
        want = ref(tokens)
        got = load_twist_checkpoint(cut_dir)(tokens)
    diff = (got - want).abs().max().item()
    print(f"ok   PyTorch: {cut_dir} logits vs the source with dropped rows zeroed: max |diff| {diff:.2e}")
    bad += diff > 1e-4
sys.exit(1 if bad else 0)
PY
else
    echo "SKIP: /usr/bin/python3 cannot import torch: extracted checkpoints not opened in PyTorch"
fi

# ---- --select random: a fixed draw per seed, K distinct ascending heads per layer --------------
expect_ok extract --model src --heads 2 --mlp 64 --out rand1 --select random --seed 5 --json=r1.json
expect_ok extract --model src --heads 2 --mlp 64 --out rand2 --select random --seed 5 --json=r2.json
expect_ok extract --model src --heads 2 --mlp 64 --out rand3 --select random --seed 6 --json=r3.json
python3 - r1.json r2.json r3.json <<'PY' || fail "--select random"
import json, sys
k1, k2, k3 = (json.loads(open(f).read().splitlines()[-1])["kept"] for f in sys.argv[1:4])
assert k1 == k2, "the same seed drew differently"
assert k1 != k3, "seeds 5 and 6 drew the same heads and units"
for layer in k1 + k3:
    for key, n, limit in (("heads", 2, 4), ("units", 64, 128)):
        v = layer[key]
        assert len(v) == n and v == sorted(set(v)) and 0 <= v[0] and v[-1] < limit, (key, v)
print("ok   --select random: the same seed, the same draw; another seed, another; valid indices")
PY
cmp -s rand1/model.safetensors rand2/model.safetensors || fail "--select random: same seed, other bytes"
[[ -n $(loss_of rand1) ]] || fail "twist eval did not open the random cut"

# ---- bad input: one message, non-zero exit, nothing written ---------------------------------
expect_fail "--heads 5: layer 0 of src has 4 heads" bad1 extract --model src --heads 5 --mlp 64 --out bad1
expect_fail "--mlp 129: layer 0 of src has 128 MLP units" bad2 extract --model src --heads 2 --mlp 129 --out bad2
expect_fail "--heads" bad3 extract --model src --heads 0 --mlp 64 --out bad3
cp -r src damaged
printf 'XXXX' | dd of=damaged/model.safetensors bs=1 seek=200 conv=notrunc 2>/dev/null
expect_fail "damaged/model.safetensors" bad4 extract --model damaged --heads 2 --mlp 64 --out bad4
expect_fail "no such checkpoint directory" bad5 extract --model missing --heads 2 --mlp 64 --out bad5
before=$(cat cut/checksums.json)
expect_fail "--out cut is not empty" "" extract --model src --heads 1 --mlp 32 --out cut
[[ $(cat cut/checksums.json) == "$before" ]] || fail "a refused extract changed cut/"
mkdir notes && echo mine >notes/log.txt
expect_fail "--out notes is not empty" "" extract --model src --heads 1 --mlp 32 --out notes
[[ $(ls notes) == log.txt ]] || fail "a refused extract wrote into notes/"
expect_fail "is the --model checkpoint" "" extract --model src --heads 1 --mlp 32 --out src
expect_fail "--seed belongs to --select random" bad6 extract --model src --heads 1 --mlp 32 --seed 3 --out bad6

# ---- the extraction curve (tools/experiments/extract) at tiny sizes --------------------------
if "$tools/experiments/extract" --twist "$twist" --out curve --data corpus.txt --vocab 300 \
    --layers 2 --embd 32 --heads 4 --seq-len 16 --batch 4 --rounds 3 --local-steps 2 \
    --eval-batches 4 --random-draws 2 >curve.out 2>curve.err; then
    python3 - curve <<'PY' || fail "the extraction curve's results"
import json, math, sys, xml.etree.ElementTree as ET
out = sys.argv[1]
doc = json.loads(open(out + "/results.json").read(),
                 parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
rows = doc["rows"]
assert len(rows) == 2 * 4 * (3 + 2), len(rows)
for r in rows:
    assert math.isfinite(r["loss"]) and 0 < r["loss"] < 10, r
for m in ("ist", "dense"):
    # keeping everything: every pick and scale rule is the source itself
    assert len({r["loss"] for r in rows if r["model"] == m and r["fraction"] == 1.0}) == 1, m
    assert [r["heads"] for r in rows if r["model"] == m and r["pick"] == "importance, kept"] == [4, 3, 2, 1]
    assert len([r for r in rows if r["model"] == m and r["select"] == "random"]) == 4 * 2
for s in doc["summary"]:
    assert s["random_min"] <= s["random_mean"] <= s["random_max"], s
root = ET.parse(out + "/loss_vs_fraction.svg").getroot()
assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 8
md = open(out + "/results.md").read()
assert md.count("\n| IST | 0.25 | 1 | 32 |") == 1 and md.count("\n| dense | 1 | 4 | 128 |") == 1, md
print("ok   tools/experiments/extract (tiny): 2 models x 4 fractions x 5 picks, table, SVG")
PY
else
    fail "tools/experiments/extract failed: $(cat curve.err)"
fi

if ((failures)); then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "extract: all checks passed"
