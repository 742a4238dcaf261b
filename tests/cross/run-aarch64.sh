#!/usr/bin/env bash
# Cross-builds the engine and its tests for aarch64 (THAW_ENGINE_ONLY, no
# OpenBLAS) and runs them under qemu-user on two emulated CPUs:
#   max         has the ARMv8.2 dot product: the kernels pick "neon-dotprod",
#               and test_kernels compares portable, neon and neon-dotprod;
#   cortex-a53  ARMv8.0: the kernels must pick "neon" (dotprod is refused).
# Usage: run-aarch64.sh SRC_DIR BUILD_DIR quick|full SANITIZE(0|1)
#   quick (make test, ~1 min): on max, test_kernels whole (every level against
#         the portable path, bit for bit) and test_model's forward pass of
#         every weight type against the reference and its batched-decoding
#         test; on cortex-a53, only which level the kernels choose;
#   full (make check-long): every engine test on both CPUs.
# With SANITIZE=1 the cross build has UBSan (ASan's shadow memory does not
# fit under qemu-user) and quick runs test_kernels only: the NEON code under
# UBSan, without paying twice for the forward pass the plain run covers. Exits 77, which ctest reports as skipped, when the
# cross compiler, its libc or qemu is missing.
set -euo pipefail
src=$1 build=$2 mode=$3 sanitize=${4:-0}

skip() {
    echo "SKIP: $1 (scripts/deps.sh installs gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user)"
    exit 77
}
command -v aarch64-linux-gnu-gcc >/dev/null || skip "no aarch64-linux-gnu-gcc"
[ -f /usr/aarch64-linux-gnu/include/stdio.h ] || skip "no aarch64 libc headers"
command -v qemu-aarch64 >/dev/null || skip "no qemu-aarch64"

# One build at a time in this folder (the quick and full tests share it).
mkdir -p "$build"
exec 9>"$build/.lock"
flock 9

flags=()
if [ "$sanitize" = 1 ]; then
    flags=(-DCMAKE_C_FLAGS="-fsanitize=undefined -fno-sanitize-recover=undefined"
           -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=undefined)
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$src" -B "$build" -DCMAKE_TOOLCHAIN_FILE="$src/tests/cross/aarch64-linux-gnu.cmake" \
        -DTHAW_ENGINE_ONLY=ON -DTHAW_BLAS=OFF "${flags[@]}" >/dev/null
fi
targets=(--target test_kernels test_model)
[ "$sanitize" = 1 ] && targets=(--target test_kernels)
[ "$mode" = full ] && targets=()
cmake --build "$build" -j "${JOBS:-2}" "${targets[@]}" >"$build/build.log" 2>&1 || {
    tail -40 "$build/build.log"
    echo "FAIL: aarch64 build (log: $build/build.log)"
    exit 1
}

qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
status=0
for cpu in max:neon-dotprod cortex-a53:neon; do
    name=${cpu%%:*} want=${cpu#*:}
    # run-time selection: what the kernels pick on this CPU
    got=$(QEMU_CPU=$name "${qemu[@]}" "$build/tests/engine/test_kernels" --level 2>&1 || true)
    if [ "$got" != "$want" ]; then
        echo "FAIL: on $name the kernels chose '$got', want '$want'"
        status=1
        continue
    fi
    echo "== -cpu $name: the kernels chose $got"
    [ "$mode" = quick ] && [ "$name" != max ] && continue
    # quick: test_model only the sub-tests that run the kernels; both programs
    # at once, one per core
    runs=("^test_:") # full: every engine test
    if [ "$mode" = quick ]; then
        runs=("^test_kernels\$:" "^test_model\$:test_every_type_vs_reference,test_batched_equals_sequential")
        [ "$sanitize" = 1 ] && runs=("^test_kernels\$:")
    fi
    pids=()
    for i in "${!runs[@]}"; do
        QEMU_CPU=$name THAW_TEST_ONLY=${runs[$i]#*:} ctest --test-dir "$build" -R "${runs[$i]%%:*}" \
            --output-on-failure --timeout 900 -j "${JOBS:-2}" >"$build/ctest-$name-$i.log" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        if wait "${pids[$i]}"; then
            grep -E "Passed" "$build/ctest-$name-$i.log"
        else
            cat "$build/ctest-$name-$i.log"
            status=1
        fi
    done
done
exit $status
