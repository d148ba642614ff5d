# Two commands matter: `make demo` (a local two-party federation running a
# PSI) and `make test` (everything CI runs). Both set up what they need.
.PHONY: test demo demo-down setup lint unit

test:
	bash scripts/run-tests.sh

demo:
	bash scripts/demo.sh up

demo-down:
	bash scripts/demo.sh down

setup:
	bash scripts/setup.sh

lint: setup
	.venv/bin/ansible-lint

unit: setup
	.venv/bin/python -m pytest -q tests/unit tests/static
