#!/bin/sh
# Runs every built fuzz target for a bounded time over its seed corpus.
# usage: fuzz/run.sh BUILDDIR [SECONDS]   (default 30 s per target)
# Seeds in fuzz/corpus/<name without fuzz_>/ are read, never written: new
# inputs go to a temporary folder, crashes to BUILDDIR/fuzz/artifacts/.
set -eu
build=${1:?usage: fuzz/run.sh BUILDDIR [SECONDS]}
secs=${2:-30}
here=$(cd "$(dirname "$0")" && pwd)
art="$build/fuzz/artifacts"
mkdir -p "$art"
status=0
found=0
for bin in "$build"/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    found=1
    name=$(basename "$bin")
    seeds="$here/corpus/${name#fuzz_}"
    work=$(mktemp -d)
    echo "== $name for ${secs}s (seeds: $seeds)"
    set -- "$work"
    [ -d "$seeds" ] && set -- "$work" "$seeds"
    if ! "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$art/$name-" -print_final_stats=1 "$@"; then
        echo "!! $name failed; see $art" >&2
        status=1
    fi
    rm -rf "$work"
done
[ "$found" = 1 ] || { echo "no fuzz targets in $build/fuzz (configure with -DTHAW_FUZZ=ON and clang)" >&2; exit 2; }
exit $status
