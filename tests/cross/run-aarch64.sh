#!/usr/bin/env bash
# Cross-builds the engine and its tests for aarch64 (THAW_ENGINE_ONLY, no
# OpenBLAS) and runs them under qemu-user on two emulated CPUs:
#   max         has the ARMv8.2 dot product: the kernels pick "neon-dotprod",
#               and test_kernels compares portable, neon and neon-dotprod;
#   cortex-a53  ARMv8.0: the kernels must pick "neon" (dotprod is refused).
# Usage: run-aarch64.sh SRC_DIR BUILD_DIR quick|full SANITIZE(0|1)
#   quick: test_kernels and test_model (the forward pass) on both CPUs;
#   full:  every engine test on both CPUs.
# With SANITIZE=1 the cross build has UBSan (ASan's shadow memory does not
# fit under qemu-user). Exits 77, which ctest reports as skipped, when the
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
cmake --build "$build" -j "${JOBS:-2}" >"$build/build.log" 2>&1 || {
    tail -40 "$build/build.log"
    echo "FAIL: aarch64 build (log: $build/build.log)"
    exit 1
}

tests='^test_(kernels|model)$'
[ "$mode" = full ] && tests='^test_'
status=0
for cpu in max:neon-dotprod cortex-a53:neon; do
    name=${cpu%%:*} want=${cpu#*:}
    echo "== qemu-aarch64 -cpu $name (best level must be $want)"
    if ! QEMU_CPU=$name ctest --test-dir "$build" -R "$tests" --output-on-failure \
        --timeout 900 -j "${JOBS:-2}" >"$build/ctest-$name.log" 2>&1; then
        cat "$build/ctest-$name.log"
        status=1
        continue
    fi
    grep -E "tests passed|Total Test time" "$build/ctest-$name.log"
    # run-time selection: what the kernels picked on this CPU
    got=$(QEMU_CPU=$name qemu-aarch64 -L /usr/aarch64-linux-gnu "$build/tests/engine/test_kernels" \
        --level 2>/dev/null || true)
    if [ "$got" != "$want" ]; then
        echo "FAIL: on $name the kernels chose '$got', want '$want'"
        status=1
    fi
done
exit $status
