# Two commands do everything on a fresh Debian 12 machine:
#   make demo   set up, then run the demo stack (Ctrl-C stops it all)
#   make test   set up, then run the whole test suite
# and `make demo-docker` runs the demo with Redis and the Python services in containers.
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo demo-docker test bootstrap bench flake-hunt lint

bootstrap:
	@scripts/bootstrap

# (only what the demo needs: no Docker engine, no test images)
demo:
	@scripts/bootstrap --demo
	airadev --workspace examples/demo up

# The same stack with Redis and both Python services as containers airadev builds; no registry
# needed (the local base images and wheels of bootstrap; see the script).
demo-docker: bootstrap
	scripts/demo-docker

test: bootstrap
	pytest

# Lint and format (ruff), types (mypy), the layers (import-linter; pyproject.toml). CI runs it.
lint: bootstrap
	ruff check airadev tests bench scripts/flake-hunt scripts/demo-docker
	ruff format --check airadev tests bench
	mypy
	lint-imports

bench: bootstrap
	python bench/run_all.py

# The whole suite N times (the second half with one core kept busy), failures per test.
N ?= 4
flake-hunt: bootstrap
	scripts/flake-hunt -n $(N)

.PHONY: coverage coverage-unit

# Line coverage of airadev/ for the whole suite, the airadev processes the tests start included
# (.coveragerc: coverage's subprocess patch; their data files are combined at the end).
coverage: bootstrap
	pytest --cov --cov-report=term-missing:skip-covered

# The same for tests/unit alone: what the fast tests reach by themselves.
coverage-unit: bootstrap
	pytest tests/unit --cov --cov-report=term-missing:skip-covered
