#!/usr/bin/env bash
# `twist ist --transport mpi` across two machines, played by two network namespaces on this one:
# "twist-a" and "twist-b", each with its own network (a veth pair, 10.231.7.1 and .2, and
# loopback; no route anywhere else, so no traffic leaves them) and its own host name (a UTS
# namespace). mpirun runs in twist-a and starts twist-b's ranks through an rsh agent that enters
# twist-b instead of ssh; a hostfile gives one slot per host, so rank 0 is on twist-a and rank 1
# on twist-b, as on two real machines. Usage: mpi_hosts_test.sh PATH/TO/twist
#   - the run over the two hosts gives the threads run's merged model byte for byte
#   - a rank failing on twist-b: its message names rank 1 and host twist-b, printed once
#   - a rank killed on twist-b, in its own pid namespace (so the others cannot see its process
#     and must rely on --peer-timeout), under mpirun --enable-recovery: the job ends within the
#     timeout plus a few seconds, one message, the last checkpoint kept
# Needs root, ip(8), unshare(1) and mpirun; skipped (exit 77) with the reason otherwise.
set -euo pipefail

twist=${1:?usage: mpi_hosts_test.sh PATH/TO/twist}
twist=$(realpath "$twist")
skip() {
    echo "skipped: $*"
    exit 77
}
command -v mpirun >/dev/null 2>&1 || skip "mpirun is not installed (apt-get install openmpi-bin)"
command -v ip >/dev/null 2>&1 || skip "ip(8) is not installed (apt-get install iproute2)"
command -v unshare >/dev/null 2>&1 || skip "unshare(1) is not installed (util-linux)"
[[ $(id -u) == 0 ]] || skip "network namespaces need root"

tmp=$(mktemp -d)
tmp=$(realpath "$tmp")
chmod 755 "$tmp"
tag=$$
ns_a=twist-a-$tag ns_b=twist-b-$tag
cleanup() {
    ip netns del "$ns_a" 2>/dev/null || true # deleting a namespace deletes its veth end too
    ip netns del "$ns_b" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

if ! err=$(ip netns add "$ns_a" 2>&1 && ip netns add "$ns_b" 2>&1 &&
    ip link add "twa$tag" type veth peer name "twb$tag" 2>&1); then
    skip "cannot create network namespaces and a veth pair here: $err"
fi
ip link set "twa$tag" netns "$ns_a"
ip link set "twb$tag" netns "$ns_b"
ip -n "$ns_a" addr add 10.231.7.1/24 dev "twa$tag"
ip -n "$ns_b" addr add 10.231.7.2/24 dev "twb$tag"
for ns in "$ns_a" "$ns_b"; do ip -n "$ns" link set lo up; done
ip -n "$ns_a" link set "twa$tag" up
ip -n "$ns_b" link set "twb$tag" up

# Open MPI's rsh agent is called as "agent HOST COMMAND...": run COMMAND on HOST, here in its
# namespaces. TWIST_TEST_OWN_PIDS=1 gives twist-b its own pid namespace too.
cat >"$tmp/agent" <<AGENT
#!/bin/bash
host=\$1
shift
pids=()
if [[ \$host == twist-b && -f $tmp/own-pids ]]; then pids=(--pid --fork); fi
exec ip netns exec "\$host-$tag" unshare --uts "\${pids[@]}" sh -c "hostname \$host; \$*"
AGENT
chmod +x "$tmp/agent"
printf 'twist-a slots=1\ntwist-b slots=1\n' >"$tmp/hosts"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_mca_base_component_disable_dlclose=1
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}fast_unwind_on_malloc=0"
# TCP only (no shared memory between "machines"), on the veth subnet only.
mpi=(--hostfile "$tmp/hosts" -np 2 --mca plm_rsh_agent "$tmp/agent" --mca btl self,tcp
     --mca oob_tcp_if_include 10.231.7.0/24 --mca btl_tcp_if_include 10.231.7.0/24)

corpus=$tmp/corpus.txt
"$twist" data synth --level 0 --words 20000 --out "$corpus" >/dev/null
# The corpus path is the same on both "hosts" (one file system here; on real machines every
# host needs the file at that path, or the run stops at set-up naming the rank and host).
run=(ist --heads-per-worker 2 --devices cpu --workers-per-device 2 --local-steps 2 --rounds 3
     --data "$corpus" --vocab 384 --preset nano --layers 2 --embd 64 --heads 4 --seq-len 32
     --batch 4 --eval-batches 4 --seed 7)

# on_a [ENV=VALUE...] -- MPIRUN_ARGS...: mpirun inside twist-a, output in $tmp/last.out/.err.
on_a() {
    local rc=0
    timeout 120 ip netns exec "$ns_a" unshare --uts sh -c 'hostname twist-a; exec "$@"' sh \
        mpirun "${mpi[@]}" "$@" >"$tmp/last.out" 2>"$tmp/last.err" || rc=$?
    if grep -qE "Sanitizer|runtime error:" "$tmp/last.err"; then
        fail "mpirun $*: sanitizer report"
        cat "$tmp/last.err"
    fi
    return $rc
}

# 1. The same model as the threads run, byte for byte.
"$twist" "${run[@]}" --out "$tmp/threads" >/dev/null
if ! on_a "$twist" "${run[@]}" --transport mpi --out "$tmp/hosts-run"; then
    cat "$tmp/last.err"
    fail "mpirun over twist-a and twist-b failed"
fi
for file in model.safetensors optimizer.safetensors; do
    cmp -s "$tmp/threads/$file" "$tmp/hosts-run/$file" ||
        fail "two hosts: $file differs from the threads run's"
done
echo "twist-a + twist-b: the merged model equals the threads run's byte for byte"

# 2. A rank on twist-b fails inside a round: named once, with its host.
rc=0
on_a -x TWIST_TEST_MPI_FAIL=1:1:train "$twist" "${run[@]}" --transport mpi || rc=$?
grep -E "^twist ist: " "$tmp/last.err" || true
[[ $rc != 0 && $rc != 124 ]] || fail "a failing rank on twist-b: exit $rc"
[[ $(grep -cE "^twist ist: rank 1 \(twist-b\): test fault" "$tmp/last.err") == 1 ]] ||
    fail "the failure of rank 1 on twist-b is not named exactly once"
[[ $(grep -cE "^twist ist: " "$tmp/last.err") == 1 ]] || fail "more than one rank printed"

# 3. A rank killed on twist-b, which the other side cannot watch: --peer-timeout 5 ends the job.
touch "$tmp/own-pids"
started=$SECONDS
rc=0
on_a --enable-recovery -x TWIST_TEST_MPI_FAIL=1:1:kill "$twist" "${run[@]}" --transport mpi \
    --peer-timeout 5 --out "$tmp/killed" || rc=$?
seconds=$((SECONDS - started))
grep -E "^twist ist: " "$tmp/last.err" || true
echo "killed rank on twist-b: ended after $seconds s (exit $rc)"
[[ $rc != 124 ]] || fail "the survivors still ran after 120 s"
((seconds <= 40)) || fail "took $seconds s to end with --peer-timeout 5"
[[ $(grep -cE "^twist ist: rank 0 \(twist-a\): no word from the other ranks for [0-9]+ s .*--peer-timeout 5.*last checkpoint, of round 1/3" "$tmp/last.err") == 1 ]] ||
    { fail "rank 0 did not report the timeout once"; cat "$tmp/last.err"; }
[[ $(grep -cE "^twist ist: " "$tmp/last.err") == 1 ]] || fail "more than one rank printed"
"$twist" eval --model "$tmp/killed" --data "$corpus" --batches 2 >/dev/null ||
    fail "the last checkpoint was not kept"

if ((failures)); then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "ok: mpi over two hosts"
