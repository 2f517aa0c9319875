#!/usr/bin/env bash
# Renders a report.html to a PNG with headless Chromium, to look at the layout.
#
#   tests/report_screenshot.sh REPORT.html OUT.png
#
# Sample report: cargo test -p stemforge-worker --lib report::html::tests::dump -- --ignored
# (writes /tmp/report_sample.html). Set CHROMIUM to use another binary and
# WINDOW_SIZE (default 1400,3000) to change the viewport.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 REPORT.html OUT.png" >&2
    exit 2
fi
report=$1
out=$2

if [[ ! -f "$report" ]]; then
    echo "error: report not found: $report" >&2
    exit 1
fi

chromium=${CHROMIUM:-}
if [[ -z "$chromium" ]]; then
    for c in chromium chromium-browser google-chrome; do
        if command -v "$c" >/dev/null 2>&1; then
            chromium=$(command -v "$c")
            break
        fi
    done
fi
if [[ -z "$chromium" ]] || ! command -v "$chromium" >/dev/null 2>&1; then
    echo "error: chromium not found; install it (Debian: apt-get install chromium) or set CHROMIUM=/path/to/chromium" >&2
    exit 1
fi

abs_report=$(realpath "$report")
mkdir -p "$(dirname "$out")"
abs_out=$(realpath "$out")
rm -f "$abs_out"

# Chromium writes to a profile folder; keep it out of the user's home.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

status=0
"$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --user-data-dir="$work/profile" --no-first-run --no-default-browser-check \
    --window-size="${WINDOW_SIZE:-1400,3000}" \
    --screenshot="$abs_out" "file://$abs_report" >"$work/log" 2>&1 || status=$?

if [[ ! -s "$abs_out" ]]; then
    echo "error: $chromium did not write $abs_out (exit status $status); its output:" >&2
    cat "$work/log" >&2
    exit 1
fi
echo "$abs_out"
