# Every target builds the local .venv first when it is missing or older than pyproject.toml.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch comes first and alone, at the version pyproject.toml pins, so no CUDA wheels are pulled.
# torch comes first and alone, at the version pyproject.toml pins: the CPU build where pip finds one
# (these machines' wheel folder), else PyPI's. On a GPU machine `make -B venv TORCH_CUDA=cu128` installs
# that CUDA build from pytorch.org's index instead (README, GPUs).
TORCH  := $(shell grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"')
TORCH_CUDA ?=
TORCH_PIP := $(if $(TORCH_CUDA),$(TORCH)+$(TORCH_CUDA) --extra-index-url https://download.pytorch.org/whl/$(TORCH_CUDA),$(TORCH))
N      ?= 4
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: bench-pseudolabel venv render hard-cases sheet test test-fast bench bench-render bench-fidelity bench-layers bench-store gpu-check loop clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH_PIP)
	$(BIN)/pip install -q -e . --config-settings editable_mode=compat
	touch $(STAMP)

render: $(STAMP)
	$(BIN)/python -m pipelines.render n_clips=$(N) $(ARGS)

# 24 clips at the test size holding every worn, held, sheer and simulated kind, every effect and two
# to four people in every layout; the report (outputs/hard_cases.zarr.report/) counts them.
hard-cases: $(STAMP)
	$(BIN)/python -m pipelines.render +mix=hard_cases preset=tiny n_clips=24 store.path=outputs/hard_cases.zarr $(ARGS)

sheet: $(STAMP)
	$(BIN)/python -m pipelines.contact_sheet $(ARGS)

# Two workers, one per core, each taking whole test files (a file's fixtures are built once): much of
# a test's time is a subprocess starting, Ray waiting or numpy on one core, so the two overlap.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=12 $(PYTEST_ARGS)

# No Blender, no Ray, nothing slow: quick feedback on a change (the import-layer check included).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not blender and not ray and not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m gvm_train.bench $(ARGS)
	$(BIN)/python -m pipelines.bench_pseudolabel

# Pseudo-labels against known alpha: STORE= a rendered store (composited over moving backgrounds).
bench-pseudolabel: $(STAMP)
	$(BIN)/python -m pipelines.bench_pseudolabel bench.store=$(STORE) $(ARGS)

bench-render: $(STAMP)
	$(BIN)/python -m pipelines.bench_render $(ARGS)

bench-fidelity: $(STAMP)
	$(BIN)/python -m pipelines.bench_fidelity $(ARGS)

bench-layers: $(STAMP)
	$(BIN)/python -m pipelines.bench_layers $(ARGS)

# The store's codecs on a rendered store's clips (STORE=, default data/synth.zarr) against PNG of the same frames.
bench-store: $(STAMP)
	$(BIN)/python -m pipelines.bench_store store.path=$(or $(STORE),data/synth.zarr) $(ARGS)

# Cycles on OptiX and CUDA, GPU against CPU alpha, an SVD-sized training step and inference; one line
# and status 2 on a machine without a GPU.
gpu-check: $(STAMP)
	$(BIN)/python -m pipelines.gpu_check $(ARGS)

loop: $(STAMP)
	$(BIN)/python -m pipelines.loop $(ARGS)

clean:
	rm -rf data outputs .pytest_cache
