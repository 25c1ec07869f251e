# The two commands a newcomer needs: `make demo` (install + the main job) and `make test`.
.PHONY: install demo test bench

.venv/.synthir-installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh

install: .venv/.synthir-installed

demo: install
	.venv/bin/synthir run syntriever --config configs/syntriever-scifact-minilm.yaml

test: install
	.venv/bin/python -m pytest

bench: install
	.venv/bin/python bench/eval_scifact.py
	.venv/bin/python bench/syntriever_scifact.py --seeds 0,1,2 --seed-rows gold_only,stage1,stage1_paper_loss
	.venv/bin/python bench/syntriever_paired.py
	.venv/bin/python bench/train_workers.py
	.venv/bin/python bench/http_concurrency.py --levels 4,16,32,64
	.venv/bin/python bench/http_concurrency.py --ray-actors 1 --levels 16,64
	.venv/bin/python bench/synth_scale.py --rows 10000,100000 --concurrency 64,128
