# One command sets up and runs the main job; one sets up and runs the tests.
# Both create .venv with the pinned CPU build of torch (any other torch pulls a multi-GB CUDA build).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m corr_taichi.demo --out demo-output

test: setup
	$(PY) -m pytest -q
	scripts/test_vulkan.sh $(PY)

bench: setup
	$(PY) -m corr_taichi.bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
