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

.PHONY: setup build data demo test test-fast clean help

help:
	@echo "make demo   - set up (venv, torch CPU, onebit, Fashion-MNIST) and run the main job"
	@echo "make test   - set up and run the test suite"
	@echo "make build  - rebuild the compiled kernels after changing csrc/"

# 1) the virtualenv with torch (CPU build) and the build tools
$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q "scikit-build-core>=0.10" "nanobind>=2.0" "numpy>=1.24" "safetensors>=0.4" \
	    "lightning>=2.2" "pyyaml>=6" "tqdm>=4.60" "matplotlib>=3.7" "tensorboard>=2.14" \
	    "pytest>=7" "hypothesis>=6.80"
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
	$(PY) -m onebit.demo

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

clean:
	rm -rf build $(VENV)
