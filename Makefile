# The README's commands. Each target bootstraps what it needs, so a fresh machine works.
# uv: a real binary in ~/.local/bin (a pip-installed uv under pyenv 3.11 is a shim that fails
# in this folder, whose .python-version says 3.12).
UV ?= $(HOME)/.local/bin/uv
RUN := $(UV) run --frozen
# Test modules run on two workers (a module's fixtures stay in one): most of the suite waits on
# subprocesses (act, git, DVC, servers), so two workers fit a 2-core machine. Files go out in
# collection order (tests/conftest.py puts the slowest folders first): xdist's default reorder,
# by test count, sent the 2-test demo file last, and one worker ran it alone for ~8 minutes.
TEST_WORKERS ?= 2

.PHONY: demo setup setup-competitors setup-tools test lint mlflow-ui bench

demo: setup  ## the whole loop in .scratch/demo: baseline, PR report, merge deploys, revert rolls back
	$(RUN) modelops demo

setup: $(UV)  ## install the locked environment (Python 3.12 through uv)
	$(UV) sync --frozen --compile-bytecode

setup-competitors: $(UV)  ## seldon-core and MLServer, in their own lock, for conformance tests and benchmarks
	$(UV) sync --frozen --compile-bytecode --project benchmarks/competitors

$(UV):
	python3 -m pip install --user --quiet uv

# promtool (tests/gitops/test_monitoring.py) and prometheus (tests/integration/test_analyze.py: the
# canary analysis against a real server) are Go binaries, not on PyPI. Each one missing from PATH
# and TOOLS_BIN is taken out of Debian's `prometheus` package (apt-get download + dpkg-deb -x: no
# root, nothing installed system-wide, no service started). Without apt it says what to install and
# goes on: the tests then fail with the same advice under CI=true (they skip on a laptop).
PROMTOOL ?= promtool
PROMETHEUS ?= prometheus
TOOLS_BIN ?= .venv/bin
setup-tools: setup  ## promtool and prometheus for the monitoring tests, into $(TOOLS_BIN) unless already installed
	@need=""; \
	command -v $(PROMTOOL) >/dev/null 2>&1 || [ -x $(TOOLS_BIN)/promtool ] || need="$$need promtool"; \
	command -v $(PROMETHEUS) >/dev/null 2>&1 || [ -x $(TOOLS_BIN)/prometheus ] || need="$$need prometheus"; \
	if [ -z "$$need" ]; then exit 0; fi; \
	tmp=$$(mktemp -d); \
	fetch() { (cd "$$tmp" && apt-get download prometheus) >/dev/null 2>&1; }; \
	refresh() { if [ "$$(id -u)" = 0 ]; then apt-get update -qq; else sudo -n apt-get update -qq; fi; } 2>/dev/null; \
	if command -v apt-get >/dev/null 2>&1 && { fetch || { refresh && fetch; }; } \
	   && dpkg-deb -x "$$tmp"/prometheus_*.deb "$$tmp/x" && mkdir -p $(TOOLS_BIN); then \
	  for tool in $$need; do \
	    install -m 0755 "$$tmp/x/usr/bin/$$tool" $(TOOLS_BIN)/$$tool \
	      && echo "setup-tools: $$tool installed in $(TOOLS_BIN) (from Debian's prometheus package)"; \
	  done; \
	else \
	  echo "setup-tools:$$need missing and could not be installed here: install them (apt-get install prometheus, brew install prometheus, or a release from https://prometheus.io/download/) and put them on PATH" >&2; \
	fi; \
	rm -rf "$$tmp"

test: setup setup-competitors setup-tools  ## the whole suite: pre-commit checks, then pytest
	$(RUN) pre-commit run --all-files --show-diff-on-failure
	$(RUN) pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=40

lint: setup
	$(RUN) pre-commit run --all-files --show-diff-on-failure

mlflow-ui: setup  ## browse the runs in the repository's SQLite store
	@# One worker and no GenAI job runner: a laptop's read-only browser needs neither, and MLflow's
	@# defaults (4 workers, ~7 job-runner processes, each importing MLflow) cost ~30 CPU-s to start.
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(RUN) mlflow ui --backend-store-uri sqlite:///mlflow.db \
	  --host 127.0.0.1 --port $${PORT:-5000} --workers 1

bench: setup  ## benchmarks/pipeline.py: wall time, peak memory, DVC overhead
	$(RUN) python benchmarks/pipeline.py
