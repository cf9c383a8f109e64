# pccl: developer and CI entry points.
#
#   make deps     install the missing system (apt) and Python (pip) dependencies; idempotent
#   make build    configure (Ninja, RelWithDebInfo) and build into build/
#   make test     deps + build, then ctest, then install the Python package and run its tests
#   make demo     deps + build, then a 4-peer training demo with a killed and a joining peer
#   make bench    deps + build, then build/bench/pccl-bench with its default sweep
#   make soak     deps + build, then the churn soak build/stress/pccl-soak (120 s, seed 1, master
#                 faults; SOAK_ARGS="--master-faults --duration 1800 --peers 8 --seed 7" to change;
#                 stress/README.md)
#   make asan     build-asan/ with -fsanitize=address,undefined, then ctest there
#   make tsan     build-tsan/ with -fsanitize=thread, then ctest there
#   make fuzz     the libFuzzer harnesses (tests/fuzz, docs/fuzzing.md): installs clang-14,
#                 libfuzzer-14-dev and libclang-rt-14-dev if missing, builds them with ASan and
#                 UBSan into build-fuzz/, runs each for FUZZ_SECONDS (60) on a scratch copy of
#                 the seed corpus tests/fuzz/corpus
#                 (new inputs never land in the repository); fails on any crash, leak, timeout,
#                 out-of-memory or broken invariant, leaving the input in build-fuzz/artifacts/.
#                 FUZZ_RUNS=N stops each after N executions instead (with FUZZ_SECONDS=0: no time
#                 limit); FUZZ_RSS_MB (2048) is the memory limit; FUZZ_ARGS passes more flags.
#   make fuzz-short  `make fuzz` for 30 s per harness; `make test` runs it after ctest (5
#                 harnesses: 2.5 min, plus 1-2 min to build them on 2 cores; FUZZ_SHORT=0 skips it)
#   make install  cmake --install build (PREFIX=/usr/local by default; DESTDIR honoured)
#   make clean    remove the build directories
#
# Variables: PYTHON (default python3: the machine's pyenv interpreter, not Debian's),
# BUILD_TYPE (RelWithDebInfo), JOBS (nproc), PREFIX (/usr/local), CMAKE_ARGS (extra -D...),
# SOAK_ARGS (arguments of pccl-soak for `make soak`).

# Targets run in the order they are named, even under `make -j`: deps must finish before a
# build starts, and a build before its tests.
.NOTPARALLEL:
.DEFAULT_GOAL := build
SHELL := /bin/bash

PYTHON     ?= python3
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX     ?= /usr/local
CMAKE      ?= cmake
CTEST      ?= ctest
CMAKE_ARGS ?=
BUILD_DIR  ?= build

# Debian packages the build, tests and tools need.
APT_PACKAGES := build-essential cmake ninja-build pkg-config libasio-dev libzstd-dev \
                libxxhash-dev catch2 libssl-dev iproute2 nftables \
                libcpp-httplib-dev nlohmann-json3-dev etcd-server chromium
# Debian packages of `make fuzz` only (clang's libFuzzer with its sanitizers). libclang-rt-14-dev
# holds the sanitizer and fuzzer runtimes: clang-14 only recommends it, and deps install without
# recommends (a fresh Debian 12 then fails to link any harness).
FUZZ_APT_PACKAGES := clang-14 libfuzzer-14-dev libclang-rt-14-dev
# Python packages as "import-name:pip-requirement". torch is checked by import only, so an
# already installed torch of another version is left alone.
PIP_PACKAGES := numpy:numpy pytest:pytest pybind11:pybind11 scikit_build_core:scikit-build-core \
                prometheus_client:prometheus-client jsonschema:jsonschema
TORCH_REQUIREMENT := torch==2.13.0

# root runs apt-get directly; anyone else goes through sudo when it exists.
SUDO := $(shell if [ "$$(id -u)" = 0 ]; then :; elif command -v sudo >/dev/null 2>&1; then echo sudo; fi)

# The Python test suite (added by a later issue). `make test` runs it only if it exists.
PY_TEST_DIR := bindings/python/tests

.PHONY: deps deps-apt deps-python configure build test demo bench soak asan tsan install clean \
        deps-fuzz fuzz-build fuzz fuzz-short

deps: deps-apt deps-python

deps-apt deps-fuzz:
	@missing=""; \
	for p in $(if $(filter deps-fuzz,$@),$(FUZZ_APT_PACKAGES),$(APT_PACKAGES)); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing Debian packages:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else \
	  echo "deps: Debian packages present"; \
	fi

deps-python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "deps: $(PYTHON) not found" >&2; exit 1; }
	@missing=""; \
	for spec in $(PIP_PACKAGES); do \
	  mod="$${spec%%:*}"; req="$${spec#*:}"; \
	  $(PYTHON) -c "import $$mod" >/dev/null 2>&1 || missing="$$missing $$req"; \
	done; \
	$(PYTHON) -c "import torch" >/dev/null 2>&1 || missing="$$missing $(TORCH_REQUIREMENT)"; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing Python packages with $$($(PYTHON) -c 'import sys; print(sys.executable)'):$$missing"; \
	  PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip install --no-input $$missing; \
	else \
	  echo "deps: Python packages present"; \
	fi

configure:
	$(CMAKE) -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)

build: configure
	$(CMAKE) --build $(BUILD_DIR) -j$(JOBS)

test: deps build
	@# A failing suite's full output is long and CI shows only its ends: the Catch2 failures are
	@# printed again last, where they are seen.
	$(CTEST) --test-dir $(BUILD_DIR) --output-on-failure || { rc=$$?; \
	  bash tests/failure_summary.sh $(BUILD_DIR)/Testing/Temporary/LastTest.log; exit $$rc; }
	@if [ "$(FUZZ_SHORT)" != 0 ]; then $(MAKE) --no-print-directory fuzz-short; fi
	@# ---- Python: build and install the package from this tree, then run its tests. ----
	@if [ -d $(PY_TEST_DIR) ]; then \
	  echo "$(PYTHON) -m pip install --no-build-isolation ./bindings/python"; \
	  CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) PIP_ROOT_USER_ACTION=ignore \
	    $(PYTHON) -m pip install --no-input --no-build-isolation --no-deps ./bindings/python || exit $$?; \
	  echo "$(PYTHON) -m pytest $(PY_TEST_DIR)"; \
	  rc=0; $(PYTHON) -m pytest $(PY_TEST_DIR) || rc=$$?; \
	  if [ $$rc = 5 ]; then echo "test: pytest collected no tests in $(PY_TEST_DIR)"; \
	  elif [ $$rc != 0 ]; then exit $$rc; fi; \
	else \
	  echo "test: no $(PY_TEST_DIR) yet, Python tests skipped"; \
	fi

demo: deps build
	bash examples/demo.sh $(BUILD_DIR)

bench: deps build
	$(BUILD_DIR)/bench/pccl-bench

# The churn soak: peers killed, stopped and started at random, and the master killed and
# restarted or stopped and resumed, while every result is checked. Its defaults (--duration 120
# --seed 1 --peers 6) apply unless SOAK_ARGS overrides them.
SOAK_ARGS ?= --master-faults
soak: deps build
	$(BUILD_DIR)/stress/pccl-soak $(SOAK_ARGS)

# Sanitizer builds: their own trees so they never mix with build/.
asan: deps
	$(CMAKE) -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DPCCL_SANITIZE=address,undefined $(CMAKE_ARGS)
	$(CMAKE) --build build-asan -j$(JOBS)
	ASAN_OPTIONS=$${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
	UBSAN_OPTIONS=$${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
	  $(CTEST) --test-dir build-asan --output-on-failure

# ThreadSanitizer needs a narrow address-space layout: run the tests with ASLR off where the
# kernel lets us (setarch -R), plainly otherwise.
tsan: deps
	$(CMAKE) -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DPCCL_SANITIZE=thread $(CMAKE_ARGS)
	$(CMAKE) --build build-tsan -j$(JOBS)
	@norand=""; if setarch "$$(uname -m)" -R true >/dev/null 2>&1; then norand="setarch $$(uname -m) -R"; fi; \
	echo "TSAN_OPTIONS=$${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:intercept_send=0} $$norand $(CTEST) --test-dir build-tsan --output-on-failure"; \
	TSAN_OPTIONS=$${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:intercept_send=0} \
	  $$norand $(CTEST) --test-dir build-tsan --output-on-failure

# The fuzz harnesses: their own tree, built with clang-14, only the decoders and the harnesses.
FUZZ_SECONDS ?= 60
FUZZ_RUNS    ?= -1
FUZZ_RSS_MB  ?= 2048
FUZZ_ARGS    ?=
FUZZ_SHORT   ?= 1
FUZZERS      := fuzz_control fuzz_data_wire fuzz_transfer fuzz_quantize fuzz_handshake

fuzz-build: deps-apt deps-fuzz
	$(CMAKE) -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DCMAKE_C_COMPILER=clang-14 \
	  -DCMAKE_CXX_COMPILER=clang++-14 -DPCCL_BUILD_FUZZ=ON -DPCCL_BUILD_TESTS=OFF -DPCCL_BUILD_BENCH=OFF \
	  -DPCCL_BUILD_EXAMPLES=OFF -DPCCL_BUILD_STRESS=OFF $(CMAKE_ARGS)
	$(CMAKE) --build build-fuzz -j$(JOBS) --target fuzzers

# Each harness on a scratch copy of its corpus; libFuzzer exits non-zero on a crash, a leak
# (ASan's leak check runs after the last input), a timeout or the memory limit.
fuzz: fuzz-build
	@scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; mkdir -p build-fuzz/artifacts; \
	for f in $(FUZZERS); do \
	  mkdir -p "$$scratch/$$f"; cp tests/fuzz/corpus/$$f/* "$$scratch/$$f/"; \
	  echo "fuzz: $$f ($(FUZZ_SECONDS) s, runs $(FUZZ_RUNS), $$(ls tests/fuzz/corpus/$$f | wc -l) seeds)"; \
	  build-fuzz/tests/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -runs=$(FUZZ_RUNS) -rss_limit_mb=$(FUZZ_RSS_MB) \
	    -timeout=20 -print_final_stats=1 -artifact_prefix=build-fuzz/artifacts/$$f- $(FUZZ_ARGS) \
	    "$$scratch/$$f" > "build-fuzz/$$f.log" 2>&1; rc=$$?; \
	  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "build-fuzz/$$f.log"; \
	  if [ $$rc != 0 ]; then tail -n 40 "build-fuzz/$$f.log"; echo "fuzz: $$f failed (rc $$rc), log build-fuzz/$$f.log" >&2; exit 1; fi; \
	done; echo "fuzz: every harness passed"

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=30 FUZZ_RUNS=-1

install: build
	$(CMAKE) --install $(BUILD_DIR) --prefix $(PREFIX)

clean:
	rm -rf build build-asan build-tsan build-fuzz
