#!/usr/bin/env bash
# The links experiment (tools/experiments/links) end to end at tiny sizes, as root:
#   - results.json is strict JSON with IST, data parallel and local SGD at both bandwidths, equal
#     tokens, finite losses, and the same losses at both bandwidths (the runs are deterministic
#     on the CPU: the link changes the time, not the numbers); IST moves fewer bytes than local
#     SGD; the 100 Mbit/s link measured no faster than 100 Mbit/s allows (the shaper is on);
#   - results.md has a table per bandwidth, the SVG parses with a line per method and bandwidth;
#   - network.txt shows the private addresses and no default route in any namespace;
#   - the namespaces are gone afterwards, after a SIGTERM in the middle of a run too (exit 130,
#     no process of that run left), and a namespace left by a killed earlier run is removed;
#   - --codec bf16 reaches twist (IST's bytes halve); --replot rewrites the same tables; bad flags give one message and write nothing.
# Needs root, ip(8), tc(8), unshare(1), mpirun and python3; skipped (exit 77) otherwise.
# Usage: links_smoke.sh PATH/TO/twist TOOLS_DIR
set -euo pipefail

twist=${1:?usage: links_smoke.sh PATH/TO/twist TOOLS_DIR}
tools=${2:?usage: links_smoke.sh PATH/TO/twist TOOLS_DIR}
skip() {
    echo "SKIP: links_smoke: $*"
    exit 77
}
for tool in ip tc unshare mpirun python3; do
    command -v $tool >/dev/null 2>&1 || skip "$tool is not installed"
done
[[ $(id -u) == 0 ]] || skip "network namespaces and tc need root"
probe=twlprobe$$
if ! err=$(ip netns add $probe 2>&1); then skip "cannot create a network namespace here: $err"; fi
ip netns del $probe
# The help is read whole first: with pipefail, `grep -q` leaving early would make a slow writer
# (the sanitizer build) die of SIGPIPE and the test skip for no reason.
ist_help=$("$twist" ist --help 2>&1)
grep -q -- "--transport" <<<"$ist_help" || skip "this twist has no --transport"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
chmod 755 "$tmp"
# As in mpi_hosts: Open MPI keeps its components loaded, so that LeakSanitizer (sanitizer build)
# can name their frames for tools/lib/lsan.supp.
export OMPI_MCA_mca_base_component_disable_dlclose=1
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}fast_unwind_on_malloc=0"
exp="$tools/experiments/links"
"$twist" data synth --level 0 --words 20000 --out "$tmp/corpus.txt" >/dev/null
tiny=(--twist "$twist" --data "$tmp/corpus.txt" --hosts 2 --vocab 300 --layers 1 --embd 32
      --heads 2 --seq-len 16 --batch 2 --rounds 2 --local-steps 2 --eval-batches 2
      --heads-per-worker 1 --bandwidths 1gbit,100mbit --measure-mb 4)

gone() { # gone PID: no namespace of that run is left
    ! ip netns list | grep -qE "^twl$1-"
}

# A namespace "left by a killed run": its pid no longer exists.
true &
dead=$!
wait $dead
ip netns add "twl$dead-h0"

start=$SECONDS
"$exp" "${tiny[@]}" --out "$tmp/exp" >"$tmp/out" 2>"$tmp/err" &
pid=$!
rc=0
wait $pid || rc=$?
if [[ $rc != 0 ]]; then
    cat "$tmp/out" "$tmp/err" >&2
    gone $pid || echo "FAIL: and it left namespaces" >&2
    echo "FAIL: the experiment failed (exit $rc)" >&2
    exit 1
fi
echo "ok   tools/experiments/links (tiny) in $((SECONDS - start)) s"
gone $pid || fail "namespaces of the run are left: $(ip netns list | grep "twl$pid-")"
gone "$dead" || { fail "the stale namespace twl$dead-h0 was not removed"; ip netns del "twl$dead-h0"; }
echo "ok   no namespace left (the run's, and a stale one of a dead pid)"

python3 - "$tmp/exp" <<'EOF' || fail "results check"
import json, math, sys, xml.etree.ElementTree as ET
out = sys.argv[1]
def bad_constant(c):
    raise ValueError("non-strict JSON constant " + c)
doc = json.loads(open(out + "/results.json").read(), parse_constant=bad_constant)
runs = doc["runs"]
assert sorted((r["bandwidth"], r["method"]) for r in runs) == sorted(
    (b, m) for b in ("1gbit", "100mbit") for m in ("ist", "allreduce", "localsgd")), runs
tokens = doc["config"]["tokens_per_method"]
assert tokens == 2 * 2 * 2 * 16 * 2, tokens
by = {(r["bandwidth"], r["method"]): r for r in runs}
for r in runs:
    assert r["tokens"] == tokens
    assert math.isfinite(r["final_loss"]) and 0 < r["final_loss"] < 10, r
    assert len(r["curve"]) == 2 and r["wall_s"] > 0 and r["bytes_moved"] > 0, r
    assert r["time_to_l_star_s"] is not None, r
for m in ("ist", "allreduce", "localsgd"):
    a, b = by[("1gbit", m)], by[("100mbit", m)]
    assert a["final_loss"] == b["final_loss"], (m, a["final_loss"], b["final_loss"])
    assert a["bytes_moved"] == b["bytes_moved"], m
assert by[("1gbit", "ist")]["bytes_moved"] < by[("1gbit", "localsgd")]["bytes_moved"]
slow = by[("100mbit", "ist")]["measured_MBps"]
assert 0 < slow <= 100e6 / 8 / 1e6 * 1.1, slow
print("ok   results.json: 3 methods x 2 bandwidths, equal tokens, same losses at both "
      "bandwidths, IST moves less than local SGD, 100mbit measured %.1f MB/s" % slow)
md = open(out + "/results.md").read()
assert md.count("| IST |") == 2 and md.count("| local SGD |") == 2, md
root = ET.parse(out + "/loss_vs_wall.svg").getroot()
ns = "{http://www.w3.org/2000/svg}"
assert root.tag == ns + "svg"
assert len(root.findall(ns + "polyline")) == 6
texts = " ".join(t.text or "" for t in root.iter(ns + "text"))
for label in ("IST, 1gbit", "data parallel, 100mbit", "local SGD, 100mbit"):
    assert label in texts, label
net = open(out + "/network.txt").read()
assert "10.231.16.1/24" in net and "10.231.16.2/24" in net
assert not any(l.startswith("default") for l in net.splitlines()), "a default route"
assert ("tbf" in net) or ("netem" in net), "no shaper"
print("ok   results.md, loss_vs_wall.svg and network.txt (private addresses, no default route)")
EOF

# --codec passes through to every method (when this twist has codecs): bf16 halves IST's bytes.
if grep -q -- "--codec" <<<"$ist_help"; then
    if "$exp" "${tiny[@]}" --bandwidths 1gbit --methods ist --codec bf16 --out "$tmp/bf16" \
        >"$tmp/cout" 2>"$tmp/cerr"; then
        python3 - "$tmp/exp" "$tmp/bf16" <<'EOF' || fail "--codec bf16"
import json, sys
fp32, bf16 = (json.load(open(d + "/results.json")) for d in sys.argv[1:3])
assert bf16["config"]["codec"] == "bf16" and fp32["config"]["codec"] == "fp32"
a = [r for r in fp32["runs"] if r["method"] == "ist" and r["bandwidth"] == "1gbit"][0]
b = bf16["runs"][0]
assert b["bytes_moved"] * 2 == a["bytes_moved"], (a["bytes_moved"], b["bytes_moved"])
print("ok   --codec bf16: IST moves %d bytes, half of fp32's %d" % (b["bytes_moved"], a["bytes_moved"]))
EOF
    else
        fail "--codec bf16 failed: $(cat "$tmp/cerr")"
    fi
else
    echo "SKIP: this twist has no --codec: the pass-through is not checked"
fi

# --replot rewrites the tables and plot from the runs' records, the same numbers.
cp "$tmp/exp/results.md" "$tmp/results.before.md"
if ! "$exp" --out "$tmp/exp" --replot >/dev/null 2>"$tmp/rerr"; then
    fail "--replot failed: $(cat "$tmp/rerr")"
fi
cmp -s "$tmp/exp/results.md" "$tmp/results.before.md" || fail "--replot changed results.md"
echo "ok   --replot rewrites the same results.md"

# Interrupted in the middle of a run: namespaces removed, the run's processes ended, exit 130.
"$exp" "${tiny[@]}" --rounds 400 --out "$tmp/int" >"$tmp/iout" 2>"$tmp/ierr" &
pid=$!
for _ in $(seq 300); do
    grep -q "IST over 1gbit" "$tmp/iout" 2>/dev/null && break
    sleep 0.1
done
sleep 1
kill -TERM $pid
rc=0
wait $pid || rc=$?
[[ $rc == 130 ]] || { fail "SIGTERM: exit $rc, want 130"; cat "$tmp/iout" "$tmp/ierr" >&2; }
gone $pid || fail "SIGTERM left namespaces: $(ip netns list | grep "twl$pid-")"
grep -q "namespaces removed" "$tmp/ierr" || fail "SIGTERM: no message: $(cat "$tmp/ierr")"
sleep 1
if pgrep -f "$tmp/int/" >/dev/null; then
    fail "SIGTERM left processes of the run: $(pgrep -af "$tmp/int/")"
fi
[[ ! -e $tmp/int/results.json ]] || fail "an interrupted run wrote results.json"
echo "ok   SIGTERM mid-run: exit 130, namespaces removed, no process left"

expect_refused_flags "$exp" "--hosts 1" "--bandwidths 1gbps" "--delays 1ms,2ms,3ms" "--methods ist,foo"

if ((failures)); then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "links_smoke: all checks passed"
