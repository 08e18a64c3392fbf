#!/usr/bin/env bash
# Profiles of `twist train --preset tiny --steps 20` on cpu, opencl:0 and vulkan:0, their
# summaries, and the report page of all three runs and traces.
set -u
# Run from the repository: TWIST (default build/twist) and OUT (default build/report-example).
T=$(realpath "${TWIST:-build/twist}")
mkdir -p "${OUT:-build/report-example}"
cd "${OUT:-build/report-example}" || exit 1
$T devices > devices.txt 2>&1
for dev in cpu opencl:0 vulkan:0; do
    name=${dev/:/}
    rm -rf "run-$name"
    /usr/bin/time -f "%e s wall" $T train --preset tiny --steps 20 --device "$dev" --log-every 1 \
        --eval-every 10 --eval-batches 4 --out "run-$name" --profile "tiny-$name.json" \
        > "train-$name.log" 2>&1
    echo "train $dev: exit $?" >> status.txt
    $T profile summary "tiny-$name.json" --top 12 > "summary-$name.txt" 2>&1
done
$T report run-cpu/metrics.jsonl run-opencl0/metrics.jsonl run-vulkan0/metrics.jsonl \
    tiny-cpu.json tiny-opencl0.json tiny-vulkan0.json --out report --overwrite \
    --title "twist train --preset tiny --steps 20: cpu, opencl:0, vulkan:0" > report.log 2>&1
echo "report: exit $?" >> status.txt
echo done >> status.txt
