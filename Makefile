# The two commands a newcomer needs: `make demo` (install + the main job) and `make test`.
.PHONY: install demo test bench

.venv/.synthir-installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh

install: .venv/.synthir-installed

demo: install
	.venv/bin/synthir demo

test: install
	.venv/bin/python -m pytest

bench: install
	.venv/bin/python bench/eval_scifact.py
