# Two entry points for a fresh machine with only python3:
#   make demo   -> local virtual environment, CPU torch, the embedded demo model, a PNG montage
#   make test   -> the same environment, then the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The developer/CI environment takes the CPU build of torch. Users install SynthMed with their own
# torch (the package only asks for a range); override e.g. TORCH_SPEC="torch>=2.2" to change it.
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo-output

.PHONY: setup demo test clean train-demo

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

demo: setup
	$(VENV)/bin/synthmed demo --out $(DEMO_OUT)

# The embedded demo model's training recipe (hours on a CPU; resumes where it stopped). The shipped
# demo-brain 2.0.0 is RECIPE=demo-brain-v2 (weights land beside training/demo-brain-v2/card.json).
RECIPE ?= demo-brain-v2
train-demo: setup
	RECIPE=$(RECIPE) training/demo-brain/run_recipe.sh

# The linter first (ruff, configured in pyproject.toml), then the tests: pytest's summary is the
# last line.
test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest Testing

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
