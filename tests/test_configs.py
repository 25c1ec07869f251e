"""Every shipped config validates against its model."""

from pathlib import Path

import pytest

from synthir.config import load_config
from synthir.eval.run import EvalConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("eval-*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_eval_configs_validate(path):
    cfg = load_config(EvalConfig, str(path))
    assert cfg.retriever == "dense"


def test_e5_config_carries_prefixes():
    cfg = load_config(EvalConfig, str(CONFIGS[0]))
    assert cfg.encoder.query_prefix == "query: " and cfg.encoder.passage_prefix == "passage: "
