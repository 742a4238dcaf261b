# Front door: `make run` sets up and starts a node, `make test` runs every test.
# CMake does the real build; this file only picks build folders and flags.

SANITIZE ?= 0
JOBS ?= $(shell nproc)
ifeq ($(SANITIZE),1)
  BUILD := build-san
  CMAKE_FLAGS := -DTHAW_SANITIZE=ON
else
  BUILD := build
  CMAKE_FLAGS :=
endif

.PHONY: all build deps run test test-unit fuzz check-long bench format clean

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	@cmake --build $(BUILD) -j $(JOBS)

run: deps $(BUILD)/CMakeCache.txt
	@cmake --build $(BUILD) -j $(JOBS) --target thaw thaw-echo
	@bash scripts/run-demo.sh $(BUILD)/thaw

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300 -LE long

check-long: build
	@cd $(BUILD) && ctest --output-on-failure -L long --timeout 3600

bench: deps
	@cmake -S . -B build-bench -DTHAW_BENCH=ON >/dev/null
	@cmake --build build-bench -j $(JOBS)
	@bash bench/run.sh build-bench

fuzz: deps
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DTHAW_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS)
	@bash fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf build build-san build-fuzz
