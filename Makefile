# `make run` sets a fresh machine up and runs the daemon; `make test` runs every test.
PYTHON := .venv/bin/python
ARGS ?=

.PHONY: setup run test unit lint proto

setup:
	./script/setup/install-deps

run: setup
	$(PYTHON) -m cri serve $(ARGS)

test: setup
	$(PYTHON) -m pytest tests $(ARGS)

unit: setup
	$(PYTHON) -m pytest tests/unit $(ARGS)

lint: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy cri store snapshotters runtime errdefs bench

proto: setup
	$(PYTHON) script/genproto.py
