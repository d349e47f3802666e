# Two commands do everything on a fresh machine: `make demo` and `make test`.
# The only prerequisite is python3 (>= 3.11); uv is bootstrapped into .tools/.

PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: env demo test lint fmt typecheck pytest bench clean lock

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (as on our CI machines)
# Python would otherwise compile every imported module again in every process, ~2 s
# for each `irbot` start (bench/RESULTS.md, "resume after kill -9").
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON) --quiet --compile-bytecode
	touch $@

env: $(VENV)/.synced ## create or update the virtual environment from uv.lock

demo: env ## leak-response end to end in a local sandbox (moto, a Kubernetes emulator, SQLite)
	$(BIN)/irbot playbook validate playbooks/
	$(BIN)/irbot demo --markdown .irbot/demo-timeline.md --html .irbot/demo-timeline.html

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: env ## fix what ruff can fix
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: env
	$(BIN)/mypy

PYTEST_WORKERS ?= 3

pytest: env ## all tests, in PYTEST_WORKERS processes (pytest-xdist; 0 = in this process)
	$(BIN)/pytest -n $(PYTEST_WORKERS)

test: lint typecheck pytest ## lint, format check, type check and all tests

bench: env ## performance figures (see bench/RESULTS.md)
	$(BIN)/python bench/validate_startup.py
	cd bench && ../$(BIN)/python engine_overhead.py
	cd bench && ../$(BIN)/python fanout.py
	cd bench && ../$(BIN)/python resume.py
	cd bench && ../$(BIN)/python pages.py

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache .hypothesis

lock: $(UV) ## re-resolve uv.lock after editing pyproject.toml
	$(UV) lock --python $(PYTHON)
