# `make run` sets a fresh machine up and runs the daemon; `make test` runs every test.
# `setup` installs what the daemon needs at run time, `setup-test` adds what only the tests use, `setup-kind`
# adds docker and kind for the kind cluster.
PYTHON := .venv/bin/python
ARGS ?=

.PHONY: setup setup-test setup-kind configure run demo test unit lint proto bench conformance crash fuzz kind \
	kind-down test-kind

setup:
	./script/setup/install-deps run

setup-test:
	./script/setup/install-deps test

setup-kind:
	./script/setup/install-deps kind

configure:
	./script/setup/configure-node

run: setup configure
	$(PYTHON) -m cri serve $(ARGS)

# build/demo.tar: an image to import and run without a registry (Debian's static busybox in one layer).
demo:
	dpkg-query -W -f='$${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static; }
	python3 script/demo-image

test: setup-test lint
	$(PYTHON) -m pytest tests $(ARGS)

# A three-node kind cluster of crishim nodes (kind-config.yaml) in a docker of its own; `make kind-down` ends it.
kind: setup-kind
	./script/kind/cluster up

kind-down:
	./script/kind/cluster down

# The kind tests alone: crishim's systemd unit in a node container, then the cluster (cold: builds everything).
test-kind: setup-kind
	CRISHIM_KIND=1 $(PYTHON) -m pytest tests/kind $(ARGS)

unit: setup
	$(PYTHON) -m pytest tests/unit $(ARGS)

lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy cri store snapshotters runtime errdefs sqlitedb bench
	$(PYTHON) -m mypy script/imagetar.py script/kind/build-images

proto: setup-test
	$(PYTHON) script/genproto.py

bench: setup-test
	$(PYTHON) -m bench.pull_unpack
	$(PYTHON) -m bench.container_start
	$(PYTHON) -m bench.streaming

# critest against crishim and containerd 1.6; the junit reports stay in build/conformance.
conformance: setup-test
	mkdir -p build/conformance
	CRISHIM_CONFORMANCE_REPORTS=$(CURDIR)/build/conformance $(PYTHON) -m pytest tests/e2e/test_critest.py $(ARGS); \
	status=$$?; $(PYTHON) -m tests.support.conformance_report build/conformance > build/conformance/conformance.md \
	&& cp build/conformance/conformance.md docs/conformance.md && exit $$status

# The long runs of the bounded suites: 200 seeded kill -9 trials, and 200,000 inputs per fuzz target.
crash: setup-test
	CRISHIM_CRASH_TRIALS=200 $(PYTHON) -m pytest tests/integration/test_crash_trials.py $(ARGS)

fuzz: setup-test
	FUZZ_EXAMPLES=200000 $(PYTHON) -m pytest tests/fuzz $(ARGS)
