# The README's two commands: `make run` and `make test`. Both install what is missing first.
.PHONY: setup run test lint bench

setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/workstation

test: setup
	bash scripts/test.sh

lint: setup
	.venv/bin/ruff check workstation tests benchmarks
	.venv/bin/lint-imports

bench: setup
	bash scripts/bench.sh
