# `make run` sets a fresh machine up and runs the daemon; `make test` runs every test.
PYTHON := .venv/bin/python
ARGS ?=

.PHONY: setup configure run test unit lint proto bench conformance crash fuzz

setup:
	./script/setup/install-deps

configure:
	./script/setup/configure-node

run: setup configure
	$(PYTHON) -m cri serve $(ARGS)

test: setup lint
	$(PYTHON) -m pytest tests $(ARGS)

unit: setup
	$(PYTHON) -m pytest tests/unit $(ARGS)

lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy cri store snapshotters runtime errdefs bench

proto: setup
	$(PYTHON) script/genproto.py

bench: setup
	$(PYTHON) -m bench.pull_unpack
	$(PYTHON) -m bench.container_start
	$(PYTHON) -m bench.streaming

# critest against crishim and containerd 1.6; the junit reports stay in build/conformance.
conformance: setup
	mkdir -p build/conformance
	CRISHIM_CONFORMANCE_REPORTS=$(CURDIR)/build/conformance $(PYTHON) -m pytest tests/e2e/test_critest.py $(ARGS); \
	status=$$?; $(PYTHON) -m tests.support.conformance_report build/conformance > build/conformance/conformance.md \
	&& cp build/conformance/conformance.md docs/conformance.md && exit $$status

# The long runs of the bounded suites: 200 seeded kill -9 trials, and 200,000 inputs per fuzz target.
crash: setup
	CRISHIM_CRASH_TRIALS=200 $(PYTHON) -m pytest tests/integration/test_crash_trials.py $(ARGS)

fuzz: setup
	FUZZ_EXAMPLES=200000 $(PYTHON) -m pytest tests/fuzz $(ARGS)
