#!/usr/bin/env bash
# Preflight speed and memory on a long session, side by side with ffmpeg
# decoding and scanning the same files in the same run (one core each).
#
#   tests/bench_preflight.sh MINUTES [RATE]
#
# Builds a six-stem session with its reference mix (ffmpeg + sox), then runs
# `stemforge check DIR` pinned to one core under GNU time, and ffmpeg's
# `astats` over the same seven files. Prints wall time, realtime factor, the
# ratio to ffmpeg and stemforge's peak RSS.
set -euo pipefail
minutes=${1:-4}
rate=${2:-48000}
here=$(cd "$(dirname "$0")" && pwd)
bin=${STEMFORGE_BIN:-$here/../target/release/stemforge}
[ -x "$bin" ] || { echo "build it first: cargo build --release (or set STEMFORGE_BIN)"; exit 2; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/stemforge-bench-preflight.XXXXXX")
trap 'rm -rf "$dir"' EXIT
seconds=$((minutes * 60))
echo "building a ${minutes}-minute six-stem session at ${rate} Hz in $dir ..."
"$here/support/preflight_session.sh" "$dir" "$seconds" "$rate"

# `check` exits 0 (no errors expected on the good session); -o keeps time's figures apart.
/usr/bin/time -o "$dir/time.txt" -f "%e %M" taskset -c 0 "$bin" check "$dir" >"$dir/check.txt" 2>/dev/null
read -r sf_s sf_kb <"$dir/time.txt"
grep -E "null test|error\(s\)" "$dir/check.txt" | tail -n 2
start=$(date +%s.%N)
for f in "$dir"/*.wav; do
  taskset -c 0 ffmpeg -nostdin -v error -threads 1 -i "$f" -af astats=metadata=0 -f null - 2>/dev/null
done
ff_s=$(echo "$(date +%s.%N) - $start" | bc)
echo "session: 6 stems + reference, ${seconds} s each at ${rate} Hz, 24-bit stereo"
printf 'stemforge check: %.2f s  (%.0fx realtime)  peak RSS %.1f MB\n' "$sf_s" "$(echo "$seconds / $sf_s" | bc -l)" "$(echo "$sf_kb / 1024" | bc -l)"
printf 'ffmpeg astats over the same 7 files: %.2f s\n' "$ff_s"
printf 'ratio: stemforge preflight takes %.2fx the time of ffmpeg decoding + astats\n' "$(echo "$sf_s / $ff_s" | bc -l)"
