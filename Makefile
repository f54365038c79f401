# Everything bootstraps itself: a private uv, then the locked environment in .venv.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
SYNCED := $(VENV)/.synced

export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
# aws-cdk-lib runs on Node through jsii: keep its unpacked runtime between runs, and quiet Node 20's banner.
export JSII_RUNTIME_PACKAGE_CACHE_ROOT := $(CURDIR)/.jsii-cache
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 1

.PHONY: setup test demo local lint typecheck synth clean

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ledgerlink needs Python 3.11 or newer (found %s)" % sys.version.split()[0])'
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(SYNCED): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	@touch $@

setup: $(SYNCED)

# Two workers (a file stays on one worker, so each suite's shared set-up runs once per worker).
test: setup
	$(VENV)/bin/pytest -n 2 --dist loadfile

demo: setup
	$(VENV)/bin/ledgerlink demo

local: setup
	$(VENV)/bin/ledgerlink local

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check shared functions
	$(VENV)/bin/mypy

synth: setup
	$(VENV)/bin/python -m infra.app

clean:
	rm -rf $(VENV) $(TOOLS) cdk.out .cdk-cache .jsii-cache .pytest_cache .mypy_cache .ruff_cache
