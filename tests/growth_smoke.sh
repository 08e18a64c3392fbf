#!/usr/bin/env bash
# The growth experiment (tools/experiments/growth) end to end with tiny sizes on the synthetic
# levels (a --data-dir without the corpora falls back to them, saying so), in a few seconds:
#   - results.json parses as strict JSON (no NaN/Infinity) and has every method, with finite
#     losses, the small models' FLOPs counted in the grown models' totals (concat of n models
#     and the one-model baseline cost the same), and the exact operators (double, widen to a
#     multiple, depth --identity) giving the same level-1 loss right after growth;
#   - both SVGs parse (xml.etree) with one line and one legend entry per method;
#   - results.md has a table row for every method;
#   - a second run into the same --out is refused (naming --overwrite) and changes nothing;
#     --overwrite replaces it; bad flags give one message and a non-zero exit.
# Usage: growth_smoke.sh PATH/TO/twist TOOLS_DIR
set -euo pipefail

twist=${1:?usage: growth_smoke.sh PATH/TO/twist TOOLS_DIR}
tools=${2:?usage: growth_smoke.sh PATH/TO/twist TOOLS_DIR}
if ! command -v python3 >/dev/null; then
    echo "SKIP: growth_smoke needs python3 (tools/experiments/growth is a python3 script)"
    exit 77
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exp="$tools/experiments/growth"
tiny=(--twist "$twist" --data-dir "$tmp/no-such-dir" --synthetic-words 20000 --embd 32 --heads 2
      --layers 2 --seq-len 32 --batch 4 --vocab 512 --small-steps 20 --large-steps 20
      --eval-every 10 --eval-batches 2 --final-eval-batches 4)

start=$SECONDS
if ! "$exp" "${tiny[@]}" --out "$tmp/exp" >"$tmp/out" 2>"$tmp/err"; then
    cat "$tmp/out" "$tmp/err" >&2
    echo "FAIL: the experiment failed" >&2
    exit 1
fi
echo "ok   tools/experiments/growth (tiny) in $((SECONDS - start)) s"
grep -q "using twist's synthetic levels 0 and 1" "$tmp/err" ||
    fail "a --data-dir without the corpora should say it falls back to the synthetic levels"

python3 - "$tmp/exp" <<'EOF' || fail "results check"
import json, math, sys, xml.etree.ElementTree as ET
out = sys.argv[1]
def bad_constant(c):
    raise ValueError("non-strict JSON constant " + c)
doc = json.loads(open(out + "/results.json").read(), parse_constant=bad_constant)
want = ["combine", "concat", "double", "widen", "depth", "single", "scratch"]
rows = {m["method"]: m for m in doc["methods"]}
assert sorted(rows) == sorted(want), sorted(rows)
tpb = doc["config"]["batch"] * doc["config"]["seq_len"]
for name, r in rows.items():
    for k in ("final_loss", "final_perplexity", "final_accuracy", "total_flops", "wall_s"):
        assert isinstance(r[k], (int, float)) and math.isfinite(r[k]), (name, k, r[k])
    assert 0 < r["final_loss"] < 10 and 0 <= r["final_accuracy"] <= 1, (name, r["final_loss"])
    assert r["params"] > 0 and r["level1_steps"] == 20, (name, r["params"], r["level1_steps"])
    # Total cost = the small models' + this model's level-1 training, per the stated formula.
    own = r["flops_per_token"] * r["level1_steps"] * tpb
    assert abs(r["total_flops"] - (r["small_flops"] + own)) <= 1e-9 * r["total_flops"], name
    assert r["total_tokens"] == r["small_tokens"] + 20 * tpb, name
    if name == "scratch":
        assert r["small_flops"] == 0 and r["loss_after_growth"] is None
        assert abs(r["flops_to_scratch_final_frac"] - 1.0) < 1e-9, r["flops_to_scratch_final_frac"]
    else:
        assert r["small_flops"] > 0 and r["small_tokens"] > 0, name
        assert math.isfinite(r["loss_after_growth"]), name
        assert r["curve"][0]["step"] == 0 and r["curve"][0]["flops"] == r["small_flops"], name
# n = 2: concat of two small models of s steps and one small model of 2 s steps grown by double
# have the same shape, so the same total cost; one-source methods pay for one small model.
assert rows["concat"]["total_flops"] == rows["single"]["total_flops"]
assert rows["combine"]["small_flops"] == rows["concat"]["small_flops"] == 2 * rows["double"]["small_flops"]
# Exact operators on small-1: the same function, so the same loss right after growth.
for name in ("widen", "depth"):
    d = abs(rows[name]["loss_after_growth"] - rows["double"]["loss_after_growth"])
    assert d < 1e-3, (name, d)
assert set(doc["targets"]) == {"flops_half", "multi_beats_single"}
for t in doc["targets"].values():
    assert isinstance(t["met"], bool)
md = open(out + "/results.md").read().splitlines()
table = [l for l in md if l.startswith("| ") and not l.startswith("| method") and not l.startswith("| ---")]
labels = [l.split(" | ")[0][2:] for l in table]
assert labels == [m["label"] for m in doc["methods"]], labels
for svg in ("loss_vs_tokens.svg", "loss_vs_flops.svg"):
    root = ET.parse(out + "/" + svg).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == ns + "svg", root.tag
    lines = root.findall(ns + "polyline")
    assert len(lines) == len(want), (svg, len(lines))
    texts = " ".join(t.text or "" for t in root.iter(ns + "text"))
    for name in want:
        assert name in texts, (svg, name)
    assert "validation loss" in texts and ("tokens" in texts or "FLOPs" in texts), svg
print("ok   results.json (strict), results.md and both SVGs have every method")
EOF

sum_before=$(md5sum "$tmp/exp/results.json")
if "$exp" "${tiny[@]}" --out "$tmp/exp" >"$tmp/out2" 2>"$tmp/err2"; then
    fail "a second run into a non-empty --out should be refused"
fi
grep -q -- "--overwrite" "$tmp/err2" || fail "the refusal should name --overwrite: $(cat "$tmp/err2")"
[[ $(md5sum "$tmp/exp/results.json") == "$sum_before" ]] || fail "a refused run changed results.json"
echo "ok   non-empty --out refused: $(head -c 120 "$tmp/err2")"
touch "$tmp/exp/NOTES.txt"
if ! "$exp" "${tiny[@]}" --out "$tmp/exp" --overwrite >"$tmp/out3" 2>"$tmp/err3"; then
    cat "$tmp/err3" >&2
    fail "--overwrite should replace the previous experiment"
fi
[[ -f "$tmp/exp/NOTES.txt" && -f "$tmp/exp/results.json" ]] ||
    fail "--overwrite should keep the user's files and write the results"
echo "ok   --overwrite replaces the experiment's files and keeps others"

for bad in "--n 1" "--small-steps 0" "--embd 30 --heads 4"; do
    # shellcheck disable=SC2086
    if "$exp" --twist "$twist" $bad --out "$tmp/bad" >/dev/null 2>"$tmp/errb"; then
        fail "$bad should be refused"
    elif [[ $(wc -l <"$tmp/errb") != 1 ]] || [[ -e "$tmp/bad" ]]; then
        fail "$bad: want one message and nothing written, got: $(cat "$tmp/errb")"
    else
        echo "ok   $bad refused: $(cat "$tmp/errb")"
    fi
done

if ((failures)); then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "growth_smoke: all checks passed"
