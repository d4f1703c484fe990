# `make run` sets a fresh machine up and runs the daemon; `make test` runs every test.
PYTHON := .venv/bin/python
ARGS ?=

.PHONY: setup configure run test unit lint proto bench

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
