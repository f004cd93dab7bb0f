# One command sets up and runs the main job; one sets up and runs the tests.
# Both create .venv with the pinned CPU build of torch (any other torch pulls a multi-GB CUDA build).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast doctest lint bench clean

$(VENV)/.installed: pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m corr_taichi.demo --out demo-output

# The suite runs in a random order (pytest-randomly), so that a test passing only after another shows up,
# spread over one worker process per CPU (pytest-xdist: Taichi compiles kernels on one thread).
# The seed is printed; rerun an order with `make test SEED=N`.
ifeq ($(origin SEED), undefined)
SEED := $(shell $(PYTHON) -c "import random; print(random.randrange(10**6))")
endif

# pyflakes and pycodestyle's errors (pyproject.toml [tool.ruff]); part of `make test`
lint: setup
	$(PY) -m ruff check src tests examples benchmarks scripts

test: setup lint
	@echo "test order seed: $(SEED) (rerun this order: make test SEED=$(SEED))"
	$(PY) -m pytest -q -n auto -p randomly --randomly-seed=$(SEED)
	$(MAKE) --no-print-directory doctest
	scripts/test_vulkan.sh $(PY) $(SEED)
	scripts/test_quadrants.sh $(PY) $(SEED)

# the quick loop while editing: the suite without the tests marked slow (fresh processes, ONNX, compile,
# fuzzing); `make test` runs everything
test-fast: setup lint
	@echo "test order seed: $(SEED) (rerun this order: make test-fast SEED=$(SEED))"
	$(PY) -m pytest -q -n auto -m "not slow" -p randomly --randomly-seed=$(SEED)

# the examples in the docstrings, in a process of their own (install_aliases' example changes sys.modules)
doctest: setup
	$(PY) -m pytest -q --doctest-modules src/corr_taichi -p no:randomly -p no:cacheprovider

bench: setup
	$(PY) -m corr_taichi.bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
