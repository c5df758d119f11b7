# One command to set up and run the main job, one to set up and run the tests (see README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and pinned: from a local wheel cache or PyPI this is the CPU build on
# a machine without CUDA and the CUDA build elsewhere (see README, "GPU").
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
BENCH_ARGS ?=
MSPE_HOME ?= mspe_home

.PHONY: setup run test test-fast bench bench-quick gpu-check ui clean

# molsets (MOSES) only provides dataset=zinc_moses's data file; its pinned dependencies
# (pomegranate 0.12) do not build on Python 3.11 and the file needs none: --no-deps.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps "molsets==0.3.1"
	touch $@

setup: $(VENV)/.installed

# The main job: the CPU-sized study on offline data (see README). Running it again resumes it.
run: setup
	$(PY) -m mspe_sweep.run study=zinc_quick

# pytest exits 5 when it collected nothing: that is a failure here, never a silent pass.
test: setup
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The benchmark suite: one table of ratios against peers (see README, "Performance").
bench: setup
	$(PY) -m benchmarks $(BENCH_ARGS)

bench-quick: setup
	$(PY) -m benchmarks --quick

# GPU readiness (tests marked gpu, then s/epoch, memory, packing): under 8 minutes on an H200.
gpu-check: setup
	PY=$(PY) bash benchmarks/gpu_check.sh

# The MLflow UI on the local store (tracking=local) at http://127.0.0.1:5000.
ui: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --workers 1 --port 5000 \
	    --backend-store-uri sqlite:///$(abspath $(MSPE_HOME))/mlflow.db

clean:
	rm -rf $(VENV) .pytest_cache
