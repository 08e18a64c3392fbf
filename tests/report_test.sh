#!/usr/bin/env bash
# `twist report` and `twist bench all` as a user runs them (README "Reports"):
#   - a train run, an ist run (records and --profile traces) and bench records give
#     report.html and one .svg per plot; every SVG parses (xml.etree), the page inlines each,
#     has no script and loads nothing from anywhere;
#   - the numbers drawn are the inputs': one polyline point per step record, one timeline row
#     per worker (from the records and from the trace's IST tracks), the op table's gemm calls
#     equal the trace's gemm events, the bench chart carries the record's GFLOP/s;
#   - refusals: a non-empty --out without --overwrite; --overwrite replaces only the report's
#     files; an invalid input names the file and line and writes nothing;
#   - bench all on cpu: three benchmarks, one table row each, records, chart and page.
# Usage: report_test.sh PATH/TO/twist
set -euo pipefail

twist=${1:?usage: report_test.sh PATH/TO/twist}
if ! command -v python3 >/dev/null 2>&1; then
    echo "skipped: python3 is needed to parse the SVG files"
    exit 77
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$tmp"

"$twist" train --preset nano --steps 4 --batch 2 --log-every 1 --eval-every 2 --eval-batches 1 \
    --out run --profile train.json >train.log 2>&1 || fail "train: $(tail -3 train.log)"
"$twist" ist --preset nano --heads-per-worker 2 --workers-per-device 2 --rounds 2 \
    --local-steps 2 --batch 2 --eval-batches 1 --out ist --profile ist.json >ist.log 2>&1 ||
    fail "ist: $(tail -3 ist.log)"
"$twist" bench gemm --device cpu --m 64 --n 64 --k 64 --repeat 1 --json=bench.jsonl >/dev/null ||
    fail "bench gemm"

"$twist" report run/metrics.jsonl ist/metrics.jsonl train.json ist.json bench.jsonl --out rep \
    >report.log 2>&1 || fail "report: $(cat report.log)"

python3 - rep run/metrics.jsonl ist/metrics.jsonl train.json bench.jsonl <<'PY' || fail "report content"
import json, os, re, sys
import xml.etree.ElementTree as ET

rep, train_records, ist_records, trace_path, bench_path = sys.argv[1:6]
svg_ns = "{http://www.w3.org/2000/svg}"
files = sorted(f for f in os.listdir(rep) if f.endswith(".svg"))
want = {"loss_steps.svg", "loss_tokens.svg", "loss_time.svg", "ist_timeline.svg",
        "ist_timeline-2.svg", "ops_by_op.svg", "ops_by_layer.svg", "ops_by_op-2.svg",
        "ops_by_layer-2.svg", "bench.svg"}
assert want <= set(files), f"missing plots: {sorted(want - set(files))}"
trees = {}
for f in files:
    root = ET.parse(os.path.join(rep, f)).getroot()  # raises on malformed XML
    assert root.tag == svg_ns + "svg", f"{f}: root is {root.tag}"
    trees[f] = root

html = open(os.path.join(rep, "report.html"), encoding="utf-8").read()
assert html.startswith("<!DOCTYPE html>")
assert html.count("<svg ") == len(files), "every plot is inlined in the page once"
lowered = html.lower()
for banned in ("<script", "src=", "<link", "@import", "url(", "https://"):
    assert banned not in lowered, f"the page must load nothing: found {banned!r}"

# loss against steps: the train series has one point per step record
steps = [json.loads(l) for l in open(train_records) if '"event":"step"' in l]
lines = trees["loss_steps.svg"].iter(svg_ns + "polyline")
counts = sorted(len(p.get("points").split()) for p in lines)
assert len(steps) in counts, f"{len(steps)} step records, polylines of {counts} points"
# validation points are dots with their value in the tooltip
evals = [json.loads(l) for l in open(train_records) if '"event":"eval"' in l]
titles = [t.text for t in trees["loss_steps.svg"].iter(svg_ns + "title")]
for e in evals:
    assert any(f"{e['loss']:.6g} at {e['step']}" in (t or "") for t in titles), e

# the timeline from the round records: the master and one row per worker
rounds = [json.loads(l) for l in open(ist_records) if '"event":"round"' in l]
texts = [t.text for t in trees["ist_timeline.svg"].iter(svg_ns + "text")]
workers = {f"worker {w['worker']} ({w['device']})" for r in rounds for w in r["per_worker"]}
assert len(workers) == 2 and workers <= set(texts), (workers, texts)
compute = [t.text for t in trees["ist_timeline.svg"].iter(svg_ns + "title")
           if t.text and t.text.startswith("compute ")]
assert len(compute) == 2 * len(rounds), f"{len(compute)} compute spans for {len(rounds)} rounds"
# ... and from the ist trace's worker tracks (src/ist/round_trace.c)
texts2 = [t.text for t in trees["ist_timeline-2.svg"].iter(svg_ns + "text")]
assert sum(1 for t in texts2 if t and t.startswith("worker ")) == 2, texts2

# the op table: gemm's calls equal the trace's gemm events
trace = json.load(open(trace_path))
gemms = sum(1 for e in trace["traceEvents"] if e.get("ph") == "X" and e["args"]["op"] == "gemm")
row = re.search(r"<tr><td>gemm</td><td>(\d+)</td>", html)
assert row and int(row.group(1)) == gemms, f"gemm calls {row and row.group(1)} vs {gemms}"

# the device memory high-water mark is the trace's
peak = max(e["args"]["peak_mem_bytes"] for e in trace["traceEvents"] if e.get("ph") == "X")
assert f"Device memory peaked at {peak / 2**20:.1f} MiB" in html, peak

# the bench chart carries the record's figure
bench = json.loads(open(bench_path).readline())
label = f"{bench['twist']['gflops']:.4g} GFLOP/s"
assert any(label in (t.text or "") for t in trees["bench.svg"].iter(svg_ns + "text")), label
print("report content: ok,", len(files), "plots")
PY

# --out not empty: refused; --overwrite replaces the report's files only
echo keep >rep/notes.txt
touch rep/ops_by_op-9.svg # a plot of an earlier report with more profiles
if "$twist" report bench.jsonl --out rep >again.log 2>&1; then fail "a non-empty --out was accepted"; fi
grep -q "not empty; pass --overwrite" again.log || fail "refusal message: $(cat again.log)"
"$twist" report bench.jsonl --out rep --overwrite >over.log 2>&1 || fail "--overwrite: $(cat over.log)"
[[ -f rep/notes.txt ]] || fail "--overwrite removed a file that is not the report's"
[[ ! -e rep/ops_by_op-9.svg && ! -e rep/loss_steps.svg ]] || fail "--overwrite left old plots"
[[ -f rep/bench.svg && -f rep/report.html ]] || fail "--overwrite wrote no report"

# invalid inputs: one message naming the file and line; nothing written
printf '{"event":"step","command":"train","step":1,"loss":2}\n{"event": oops\n' >bad.jsonl
if "$twist" report bench.jsonl bad.jsonl --out badrep >bad.log 2>&1; then fail "bad.jsonl accepted"; fi
grep -q "bad.jsonl:2: not valid JSON" bad.log || fail "bad line message: $(cat bad.log)"
[[ ! -e badrep ]] || fail "a refused report created its directory"
printf '[1, 2]\n' >array.json
if "$twist" report array.json --out badrep >bad.log 2>&1; then fail "a JSON array accepted"; fi
grep -q "array.json:1: not a twist record" bad.log || fail "array message: $(cat bad.log)"
head -c 2000 train.json >cut.json
if "$twist" report cut.json --out badrep >bad.log 2>&1; then fail "a cut trace accepted"; fi
grep -q "cut.json:[0-9]*: not valid JSON" bad.log || fail "cut trace message: $(cat bad.log)"
if "$twist" report missing.jsonl --out badrep >bad.log 2>&1; then fail "a missing input accepted"; fi
grep -q "cannot read missing.jsonl" bad.log || fail "missing input message: $(cat bad.log)"
if "$twist" report --out badrep >bad.log 2>&1; then fail "no input accepted"; fi
[[ ! -e badrep ]] || fail "a refused report created its directory"

# a trace written on one line (e.g. re-saved by another tool) is still read as a trace
python3 -c 'import json, sys; json.dump(json.load(open(sys.argv[1])), open(sys.argv[2], "w"))' \
    ist.json oneline.json
"$twist" report oneline.json --out one >one.log 2>&1 || fail "a trace on one line: $(cat one.log)"
[[ -f one/ops_by_op.svg && -f one/ist_timeline.svg ]] || fail "a trace on one line gave no plots"

# bench all on the cpu, small sizes: three benchmarks, one row each, chart and page
"$twist" bench all --out ba --devices cpu --gemm-size 64 --seq 32 --step-batch 1 --steps 1 \
    --repeat 1 >ba.log 2>&1 || fail "bench all: $(tail -5 ba.log)"
[[ $(grep -c '^| .* | cpu' ba/bench.md || true) == 3 ]] || fail "bench.md: $(cat ba/bench.md)"
[[ $(wc -l <ba/bench.jsonl) == 3 ]] || fail "bench.jsonl holds $(wc -l <ba/bench.jsonl) records"
python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' ba/bench.svg ||
    fail "bench.svg does not parse"
grep -q "<svg " ba/report.html || fail "bench all wrote no page"
if "$twist" bench all --out ba --devices cpu >ba2.log 2>&1; then fail "bench all into a full --out"; fi

exit "$failures"
