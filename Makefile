# The README's commands. Each target bootstraps what it needs, so a fresh machine works.
# uv: a real binary in ~/.local/bin (a pip-installed uv under pyenv 3.11 is a shim that fails
# in this folder, whose .python-version says 3.12).
UV ?= $(HOME)/.local/bin/uv
RUN := $(UV) run --frozen

.PHONY: demo setup setup-competitors test lint mlflow-ui bench

demo: setup  ## set up, reproduce the pipeline, print the metrics and where the MLflow runs are
	$(RUN) dvc repro
	$(RUN) modelops show

setup: $(UV)  ## install the locked environment (Python 3.12 through uv)
	$(UV) sync --frozen --compile-bytecode

setup-competitors: $(UV)  ## seldon-core and MLServer, in their own lock, for conformance tests and benchmarks
	$(UV) sync --frozen --compile-bytecode --project benchmarks/competitors

$(UV):
	python3 -m pip install --user --quiet uv

test: setup setup-competitors  ## the whole suite: pre-commit checks, then pytest
	$(RUN) pre-commit run --all-files --show-diff-on-failure
	$(RUN) pytest

lint: setup
	$(RUN) pre-commit run --all-files --show-diff-on-failure

mlflow-ui: setup  ## browse the runs in the repository's SQLite store
	$(RUN) mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port $${PORT:-5000}

bench: setup  ## benchmarks/pipeline.py: wall time, peak memory, DVC overhead
	$(RUN) python benchmarks/pipeline.py
