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

.PHONY: setup node-deps test demo local lint typecheck synth clean bench-merge bench-lists bench-publish

# The admin page's browser tests inject axe-core (package.json, pinned in package-lock.json) and drive
# Debian's Chromium (/usr/bin/chromium; .ci/run installs it, never a browser a tool downloads).
NODE_DEPS := node_modules/.package-lock.json
CHROMIUM ?= $(or $(LEDGERLINK_CHROMIUM),/usr/bin/chromium)

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ledgerlink needs Python 3.11 or newer (found %s)" % sys.version.split()[0])'
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(SYNCED): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	@touch $@

setup: $(SYNCED)

$(NODE_DEPS): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

node-deps: $(NODE_DEPS)

# Two workers (a file stays on one worker, so each suite's shared set-up runs once per worker).
test: setup node-deps
	@test -x "$(CHROMIUM)" || echo "NOTE: Chromium is not installed ($(CHROMIUM)), so the admin page's browser tests will fail. Install it with: sudo apt-get install -y chromium"
	$(VENV)/bin/pytest -n 2 --dist loadfile

demo: setup
	$(VENV)/bin/ledgerlink demo

local: setup
	$(VENV)/bin/ledgerlink local

# Ten minutes of captures from 50 businesses while the simulators fail at random, then the audit
# (results: bench/RESULTS.md).
.PHONY: soak
soak: setup
	$(VENV)/bin/ledgerlink soak --duration 600 --businesses 50

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check shared functions
	$(VENV)/bin/mypy

# The CDK CLI pinned in package.json runs cdk.json's app; offline once .cdk-cache holds the layer's wheels.
# --no-notices: the CLI would otherwise fetch its notices from the network.
synth: setup node-deps
	CDK_DISABLE_CLI_TELEMETRY=true npx --no-install cdk synth --quiet --no-notices

clean:
	rm -rf $(VENV) $(TOOLS) node_modules cdk.out .cdk-cache .jsii-cache .pytest_cache .mypy_cache .ruff_cache

# Merge Lists matching at 20,000 x 20,000 beside the naive all-pairs baseline (results: bench/RESULTS.md).
bench-merge: setup
	$(VENV)/bin/python -m bench.merge_bench

# Importing and refreshing the six lists of each ledger's large organisation beside a naive full
# re-import (results: bench/RESULTS.md).
bench-lists: setup
	$(VENV)/bin/python -m bench.lists_bench

# 3,000 items to one Xero organisation held to 60 calls a minute and 5 at once, batched beside one
# call per item, without and with documents (results: bench/RESULTS.md).
bench-publish: setup
	$(VENV)/bin/python -m bench.publish_bench

# Each handler's cold import from the deployable assets beside the libraries it needs (results:
# bench/RESULTS.md). Builds the layer for this machine, so it needs the wheel cache or the network.
.PHONY: bench-cold-start
bench-cold-start: setup
	$(VENV)/bin/python -m bench.cold_start_bench
