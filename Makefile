# Two commands do all the set-up on a fresh machine (README.md):
#   make demo   - the main job on the bundled default model
#   make test   - the test suite (what CI runs: .ci/run)
# Everything installs into .venv with constraints.txt, so pip never pulls CUDA builds of torch.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= -q --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: setup test demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -c constraints.txt torch==2.13.0
	$(PY) -m pip install $(PIP_FLAGS) -c constraints.txt -e ".[dev,hf,bench]"
	touch $@

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(PY) -m nvfp4 demo

clean:
	rm -rf $(VENV) .pytest_cache
