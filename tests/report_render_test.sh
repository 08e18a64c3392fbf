#!/usr/bin/env bash
# The report page as a person sees it: headless Chromium (Debian's `chromium`) renders
# report.html of a training run with its profile, an ist run and a benchmark record; the
# screenshot must not be blank (many colours, ink beyond the background in its top rows, read
# with tests/png_stats.py) and Chromium's log must hold no console message (a page without
# scripts has none; an error would show as "INFO:CONSOLE ... Uncaught ..."). Two controls show
# that the checks can fail: a blank page gives one colour, and a page with a broken script gives
# a console line. Skipped when chromium or python3 is missing.
# Usage: report_render_test.sh PATH/TO/twist
set -euo pipefail

twist=${1:?usage: report_render_test.sh PATH/TO/twist}
chromium=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $chromium ]]; then
    echo "skipped: chromium is not installed (Debian package chromium; tools/check installs it)"
    exit 77
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "skipped: python3 is needed to read the screenshots"
    exit 77
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
cd "$tmp"

render() { # HTML PNG LOG HEIGHT: a screenshot of the page, Chromium's log (console included)
    timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --no-first-run \
        --user-data-dir="$tmp/chrome" --enable-logging=stderr --v=0 --hide-scrollbars \
        --window-size=1000,"$4" --screenshot="$2" "file://$1" >"$3" 2>&1
}

# Controls: a blank page is one colour; a broken script's error reaches the log.
printf '<!DOCTYPE html><html><body></body></html>\n' >blank.html
render "$tmp/blank.html" blank.png blank.log 600 || fail "chromium failed on a blank page: $(tail -3 blank.log)"
read -r _ _ colours _ < <(python3 "$here/png_stats.py" blank.png 600)
[[ $colours == 1 ]] || fail "a blank page gave $colours colours: the blank check cannot work"
printf '<!DOCTYPE html><html><body><p>x</p><script>no_such_function();</script></body></html>\n' >broken.html
render "$tmp/broken.html" broken.png broken.log 300 || fail "chromium failed on the broken page"
grep -q "CONSOLE.*Uncaught" broken.log || fail "a script error did not reach Chromium's log: $(cat broken.log)"

"$twist" train --preset nano --steps 4 --batch 2 --log-every 1 --eval-every 2 --eval-batches 1 \
    --out run --profile train.json >train.log 2>&1 || fail "train: $(tail -3 train.log)"
"$twist" ist --preset nano --heads-per-worker 2 --workers-per-device 2 --rounds 2 \
    --local-steps 2 --batch 2 --eval-batches 1 --out ist >ist.log 2>&1 || fail "ist: $(tail -3 ist.log)"
"$twist" bench gemm --device cpu --m 64 --n 64 --k 64 --repeat 1 --json=bench.jsonl >/dev/null ||
    fail "bench gemm"
"$twist" report bench.jsonl run/metrics.jsonl ist/metrics.jsonl train.json --out rep \
    >report.log 2>&1 || fail "report: $(cat report.log)"

render "$tmp/rep/report.html" page.png page.log 2400 || fail "chromium failed: $(tail -3 page.log)"
[[ -s page.png ]] || fail "no screenshot"
if grep -q "CONSOLE" page.log; then fail "console messages: $(grep CONSOLE page.log)"; fi
read -r width height colours ink < <(python3 "$here/png_stats.py" page.png 900)
echo "screenshot ${width}x${height}: $colours colours, ink $ink in the top 900 rows"
[[ $width == 1000 && $height == 2400 ]] || fail "screenshot is ${width}x${height}"
((colours >= 16)) || fail "screenshot has $colours colours: blank or nearly"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.02 else 1)" "$ink" ||
    fail "screenshot ink $ink: blank or nearly"

# Every plot file parses on its own.
for svg in rep/*.svg; do
    python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' "$svg" ||
        fail "$svg does not parse"
done

exit "$failures"
