#!/usr/bin/env bash
# The growth experiment (tools/experiments/growth) end to end with tiny sizes on the synthetic
# levels (a --data-dir without the corpora falls back to them, saying so), in a few seconds:
#   - results.json parses as strict JSON (no NaN/Infinity) and has every method, with finite
#     losses, the small models' FLOPs counted in the grown models' totals (concat of n models
#     and the one-model baseline cost the same), and the exact operators (double, widen to a
#     multiple, depth --identity) giving the same level-1 loss right after growth;
#   - both SVGs parse (xml.etree) with one line and one legend entry per method;
#   - results.md has a table row for every method;
#   - the per-op profile (--profile-devices cpu,nosuch:7): one training step of the small and of
#     the large model on cpu, cut out of the trace and tabulated by twist profile summary, with
#     positive times, FLOPs (large > 2 x small), memory and gemm/attention/AdamW rows, in
#     results.json and as tables in results.md; the unlisted device is skipped with a message;
#   - --budget 0.5 (default): every method also refined within half the reference's FLOPs with
#     its own schedule (cost within the budget, the most steps that fit), scratch for half its
#     steps, and the budget target decided from those final losses;
#   - on the --overwrite run (two methods): --refine-lr/--refine-warmup run scratch with the
#     grown models' schedule too, the logged lr stays under the peak, and the reference is the
#     scratch run that ends lower; --seeds 2 adds a second seed set under runs/seed-2 and the
#     mean/spread table over both;
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
first=(--profile-devices cpu,nosuch:7)

start=$SECONDS
if ! "$exp" "${tiny[@]}" "${first[@]}" --out "$tmp/exp" >"$tmp/out" 2>"$tmp/err"; then
    cat "$tmp/out" "$tmp/err" >&2
    echo "FAIL: the experiment failed" >&2
    exit 1
fi
echo "ok   tools/experiments/growth (tiny) in $((SECONDS - start)) s"
grep -q "using twist's synthetic levels 0 and 1" "$tmp/err" ||
    fail "a --data-dir without the corpora should say it falls back to the synthetic levels"
grep -q "skipping nosuch:7" "$tmp/err" ||
    fail "--profile-devices should say it skips a device twist devices does not list"

python3 - "$tmp/exp" <<'EOF' || fail "results check"
import json, math, sys, xml.etree.ElementTree as ET
out = sys.argv[1]
def bad_constant(c):
    raise ValueError("non-strict JSON constant " + c)
doc = json.loads(open(out + "/results.json").read(), parse_constant=bad_constant)
want = ["combine", "concat", "double", "widen", "depth", "single", "scratch"]
if doc["config"]["refine_lr"] is not None or doc["config"]["refine_warmup"] is not None:
    want.append("scratch-refine")  # the default schedule of grown runs is not train's
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
    if name == doc["reference_scratch"]:
        assert r["small_flops"] == 0 and r["loss_after_growth"] is None
        assert abs(r["flops_to_scratch_final_frac"] - 1.0) < 1e-9, r["flops_to_scratch_final_frac"]
    elif name.startswith("scratch"):
        assert r["small_flops"] == 0 and r["loss_after_growth"] is None
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
assert set(doc["targets"]) == {"flops_half", "multi_beats_single", "budget"}
for t in doc["targets"].values():
    assert isinstance(t["met"], bool)
md = open(out + "/results.md").read().splitlines()
start = md.index([l for l in md if l.startswith("| method | params")][0])
table = []
for l in md[start + 2:]:
    if not l.startswith("| "):
        break
    table.append(l)
labels = [l.split(" | ")[0][2:] for l in table]
assert labels == [m["label"] for m in doc["methods"]], labels
# --budget 0.5 (default): every grown method refined within half of the reference's FLOPs
# (small models included) with its own schedule, and the reference for half its steps.
bud = {b["method"]: b for b in doc["budget"]}
assert sorted(bud) == sorted(m for m in want if m == doc["reference_scratch"] or
                             not m.startswith("scratch")), sorted(bud)
ref = rows[doc["reference_scratch"]]
for name, b in bud.items():
    if "final_loss" not in b:
        assert b["level1_steps"] == 0 and rows[name]["small_flops"] > 0.5 * ref["total_flops"], name
        continue
    per_step = rows[name]["flops_per_token"] * tpb
    assert b["total_flops"] <= 0.5 * ref["total_flops"] * (1 + 1e-12), (name, b["flops_frac"])
    assert b["total_flops"] + per_step > 0.5 * ref["total_flops"], name  # the most steps that fit
    assert math.isfinite(b["final_loss"]) and 0 < b["final_loss"] < 10, name
    recs = [json.loads(l) for l in open(out + "/runs/budget-" + name + "/metrics.jsonl") if l.strip()]
    assert max(r["step"] for r in recs if r.get("event") == "step") == b["level1_steps"], name
assert bud[doc["reference_scratch"]]["level1_steps"] == 10
assert doc["targets"]["budget"]["met"] == (min(b["final_loss"] for n, b in bud.items()
    if not n.startswith("scratch") and "final_loss" in b) <= ref["final_loss"])
# The per-op profile: cpu small and large, the unlisted device skipped.
prof = {(e["device"], e["model"]): e for e in doc["profile"]}
assert sorted(prof) == [("cpu", "large"), ("cpu", "small")], sorted(prof)
assert [s["device"] for s in doc["profile_skipped"]] == ["nosuch:7"], doc["profile_skipped"]
for key, e in prof.items():
    assert e["calls"] > 0 and e["device_ms"] > 0 and e["span_ms"] > 0, (key, e)
    assert e["flops"] > 0 and e["gflops"] > 0 and e["peak_bytes"] > 0, (key, e)
    ops = {r["op"]: r for r in e["ops"]}
    # One training step: forward, backward and AdamW, nothing of the final validation pass.
    for op in ("gemm", "attention_fwd", "attention_bwd", "adamw_step"):
        assert op in ops and ops[op]["calls"] > 0, (key, op)
    assert abs(sum(r["share"] for r in e["ops"]) - 1.0) < 1e-6, key
    trace = json.load(open(out + "/" + e["step_trace"]))
    xs = [t for t in trace["traceEvents"] if t.get("ph") == "X"]
    assert len(xs) == e["calls"] and xs[0]["args"]["op"] == "embedding_fwd", (key, len(xs))
    assert xs[-1]["name"].startswith("adamw."), (key, xs[-1]["name"])
# Same op sequence for both widths; the large model does more FLOPs per step.
assert prof[("cpu", "small")]["calls"] == prof[("cpu", "large")]["calls"]
assert prof[("cpu", "large")]["flops"] > 2 * prof[("cpu", "small")]["flops"]
ptable = [l for l in md if l.startswith("| cpu | small |") or l.startswith("| cpu | large |")]
assert len(ptable) == 2, ptable
assert any(l.startswith("## Per-op profile") for l in md) and any("Skipped nosuch:7" in l for l in md)
assert sum(1 for l in md if l.startswith("| gemm | ")) == 2
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
print("ok   results.json (strict), results.md and both SVGs have every method; profile "
      "tables of one step (cpu small %.1f ms, large %.1f ms); budget runs" % (
          prof[("cpu", "small")]["device_ms"], prof[("cpu", "large")]["device_ms"]))
EOF

sum_before=$(md5sum "$tmp/exp/results.json")
if "$exp" "${tiny[@]}" --out "$tmp/exp" >"$tmp/out2" 2>"$tmp/err2"; then
    fail "a second run into a non-empty --out should be refused"
fi
grep -q -- "--overwrite" "$tmp/err2" || fail "the refusal should name --overwrite: $(cat "$tmp/err2")"
[[ $(md5sum "$tmp/exp/results.json") == "$sum_before" ]] || fail "a refused run changed results.json"
echo "ok   non-empty --out refused: $(head -c 120 "$tmp/err2")"
touch "$tmp/exp/NOTES.txt"
if ! "$exp" "${tiny[@]}" --out "$tmp/exp" --overwrite --methods concat,single --refine-lr 3e-4 \
        --refine-warmup 2 --profile-devices none --seeds 2 --budget 0 >"$tmp/out3" 2>"$tmp/err3"; then
    cat "$tmp/err3" >&2
    fail "--overwrite should replace the previous experiment"
fi
[[ -f "$tmp/exp/NOTES.txt" && -f "$tmp/exp/results.json" && ! -e "$tmp/exp/runs/refined-combine" &&
   ! -e "$tmp/exp/profile" ]] ||
    fail "--overwrite should keep the user's files, drop the old runs and profile, and write the results"
echo "ok   --overwrite replaces the experiment's files and keeps others"
python3 - "$tmp/exp" <<'EOF' || fail "refine schedule check"
import json, sys
out = sys.argv[1]
doc = json.load(open(out + "/results.json"))
rows = {m["method"]: m for m in doc["methods"]}
assert sorted(rows) == ["concat", "scratch", "scratch-refine", "single"], sorted(rows)
assert doc["config"]["refine_lr"] == 3e-4 and doc["config"]["refine_warmup"] == 2
# The reference is the scratch run whose curve ends lower; its FLOPs ratio is 1.
finals = {m: rows[m]["curve"][-1]["loss"] for m in ("scratch", "scratch-refine")}
assert doc["reference_scratch"] == min(finals, key=finals.get), (doc["reference_scratch"], finals)
assert abs(rows[doc["reference_scratch"]]["flops_to_scratch_final_frac"] - 1) < 1e-9
assert doc["profile"] == [] and doc["budget"] == [] and "budget" not in doc["targets"]
md = open(out + "/results.md").read().splitlines()
want = sorted(rows)
# --seeds 2: the second seed set has every method too, and the summary has both.
assert len(doc["seed_sets"]) == 1 and doc["seed_sets"][0]["seed_set"] == 2
assert sorted(m["method"] for m in doc["seed_sets"][0]["methods"]) == sorted(want)
import os
assert os.path.isdir(out + "/runs/seed-2/refined-concat") and os.path.isdir(out + "/runs/seed-2/scratch-refine")
for s in doc["seed_summary"]:
    fl = s["final_loss"]
    assert fl["n"] == 2 and fl["min"] <= fl["mean"] <= fl["max"] and fl["std"] >= 0, s
    per = [rows[s["method"]]["final_loss"],
           [m for m in doc["seed_sets"][0]["methods"] if m["method"] == s["method"]][0]["final_loss"]]
    assert abs(fl["mean"] - sum(per) / 2) < 1e-9, (s["method"], fl, per)
assert any(l.startswith("## Over 2 seed sets") for l in md)
assert doc["target_counts"]["flops_half"]["of"] == 2
# The runs on the grown models' schedule logged no lr above its peak 3e-4.
def peak_lr(run):
    recs = [json.loads(l) for l in open(out + "/runs/" + run + "/metrics.jsonl") if l.strip()]
    return max(r["lr"] for r in recs if r.get("event") == "step")
for run in ("refined-concat", "refined-single", "scratch-refine"):
    assert peak_lr(run) <= 3e-4 * (1 + 1e-6), (run, peak_lr(run))
print("ok   --refine-lr/--refine-warmup: scratch-refine row, reference %s (%.4f vs %.4f); "
      "--seeds 2: concat %.4f +- %.4f" % (doc["reference_scratch"], finals["scratch"],
      finals["scratch-refine"], doc["seed_summary"][0]["final_loss"]["mean"],
      doc["seed_summary"][0]["final_loss"]["std"]))
EOF

expect_refused_flags "$exp" "--n 1" "--small-steps 0" "--embd 30 --heads 4" "--seeds 0" \
    "--methods concat,foo" "--profile-steps 1" "--refine-lr 0"

if ((failures)); then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "growth_smoke: all checks passed"
