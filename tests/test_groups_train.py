"""Training groups from the stage-1 table, and encoder training on Ray Train (DDP, DeepSpeed ZeRO-2, resume)."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from synthir import storage
from synthir.dense.encoder import EncoderConfig, encode_queries, load_encoder
from synthir.dense.groups import stage1_groups, stage2_groups
from synthir.dense.losses import MultiPositiveDistillationLoss, multi_positive_distillation_loss
from synthir.dense.train import TrainConfig, train_encoder
from synthir.synth.syntriever import STAGE1_SCHEMA, Stage1Config, synthesize_stage1


def _stage1_rows():
    base = {"q_cot": "q?\nLet's think step-by-step.", "p_plus": "P+", "p_minus": "P-", "parse_failure": None,
            "positives": [], "negatives": [], "engine": "recorded", "model": "m", "request_keys": []}
    return pa.Table.from_pylist([
        {**base, "query_id": "1", "query": "q1", "gold_ids": ["a", "b"], "gold_passages": ["A a", "B b"], "verdict": True},
        {**base, "query_id": "2", "query": "q2", "gold_ids": ["c"], "gold_passages": ["C c"], "verdict": False},
        {**base, "query_id": "3", "query": "q3", "gold_ids": ["d"], "gold_passages": ["D d"], "verdict": None,
         "parse_failure": "yes_no: 'maybe'"},
    ], schema=STAGE1_SCHEMA)


def test_stage1_groups_layouts_labels_and_prefixes():
    e5 = EncoderConfig(query_prefix="query: ", passage_prefix="passage: ")
    g = stage1_groups(_stage1_rows(), e5, "full").to_pydict()
    # one group per (query, gold passage); the verdict is the label: 1 yes, 0 no (relabelled), -1 unparsed
    assert g["query_id"] == ["1", "1", "2", "3"] and g["label"] == [1, 1, 0, -1]
    assert g["anchor"][0] == "query: q1" and g["gold"][:2] == ["passage: A a", "passage: B b"]
    assert g["q_cot"][0] == "passage: q?\nLet's think step-by-step." and g["p_minus"][0] == "passage: P-"
    assert list(g) == ["query_id", "anchor", "gold", "p_plus", "q_cot", "p_minus", "label"]
    assert list(stage1_groups(_stage1_rows(), e5, "cot_only").to_pydict()) == ["query_id", "anchor", "gold", "q_cot"]
    assert list(stage1_groups(_stage1_rows(), e5, "pm_only").to_pydict()) == ["query_id", "anchor", "gold", "p_plus", "p_minus", "label"]
    mined = {"1": ["N1", "N2"], "2": ["N3", "N4"], "3": ["N5", "N6"]}
    gold_only = stage1_groups(_stage1_rows(), EncoderConfig(), "gold_only", mined, 2).to_pydict()
    assert gold_only["neg_2"] == ["N2", "N2", "N4", "N6"] and "label" not in gold_only
    with pytest.raises(ValueError, match="mined negatives"):
        stage1_groups(_stage1_rows(), EncoderConfig(), "full", {"1": ["x"]}, 2)
    s2 = stage2_groups(pa.table({"query_id": ["1"], "query": ["q"], "c_plus": ["A"], "c_minus": ["B"]}), e5).to_pydict()
    assert s2 == {"query_id": ["1"], "anchor": ["query: q"], "c_plus": ["passage: A"], "c_minus": ["passage: B"]}


def test_unparsed_verdict_takes_p_plus_out_of_the_loss():
    torch.manual_seed(0)
    q, cand = torch.randn(3, 8), torch.randn(3, 4, 8)  # columns gold, p+, q_cot, p-
    loss = MultiPositiveDistillationLoss(model=None)
    got = loss.compute_loss_from_embeddings([q, *cand.unbind(1)], torch.tensor([1, 0, -1]))
    # by hand: query 2 (index 2) without its p+ column anywhere; the others see it (query 2's p+ leaves every softmax)
    s = torch.einsum("bd,kcd->bkc", torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(cand, dim=-1)) / 0.05
    s[:, 2, 1] = float("-inf")
    pos = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 0], [1, 0, 1, 0]], dtype=torch.bool)
    per = [torch.logsumexp(s[i].reshape(-1), 0) - torch.logsumexp(s[i, i][pos[i]], 0) for i in range(3)]
    assert torch.allclose(got, torch.stack(per).mean(), atol=1e-5)
    ref = multi_positive_distillation_loss(q, cand, pos, valid_mask=torch.tensor([[1, 1, 1, 1]] * 2 + [[1, 0, 1, 1]], dtype=torch.bool))
    assert torch.allclose(got, ref)


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    summary = synthesize_stage1(Stage1Config(storage=str(tmp_path_factory.mktemp("synth")), limit=48))
    return stage1_groups(storage.read_table(summary["table"]), EncoderConfig(), "full")


@pytest.mark.slow
def test_two_workers_with_deepspeed_zero2_train_and_save(ray_local, groups, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(storage.join(str(tmp_path.parent), "torch-ext")))
    ds = {"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto",
          "gradient_accumulation_steps": "auto", "train_batch_size": "auto"}
    cfg = TrainConfig(batch_size=8, max_steps=3, max_seq_length=48, num_workers=2, deepspeed=ds, lr=1e-4)
    out = str(tmp_path / "ds")
    summary = train_encoder(groups, EncoderConfig(), cfg, out)
    assert summary["world_size"] == 2 and summary["deepspeed_zero_stage"] == 2 and summary["global_step"] == 3
    log = [json.loads(x) for x in storage.read_text(storage.join(out, "train_log.jsonl")).splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in log if "loss" in r)
    trained = EncoderConfig(model=storage.join(out, "model"))
    texts = ["what causes tides?", "insulin resistance in obesity"]
    before = encode_queries(load_encoder(EncoderConfig()), EncoderConfig(), texts)
    after = encode_queries(load_encoder(trained), trained, texts)
    assert after.shape == before.shape and not np.allclose(after, before, atol=1e-4)
    # a finished run is not trained again
    assert train_encoder(groups, EncoderConfig(), cfg, out)["global_step"] == 3


@pytest.mark.slow
def test_killed_worker_resumes_from_its_last_checkpoint(ray_local, groups, tmp_path, monkeypatch):
    cfg = TrainConfig(batch_size=8, max_steps=5, save_steps=2, max_seq_length=48, fail_at_step=3, max_failures=1)
    monkeypatch.chdir(tmp_path)  # a relative output path, as `storage: ./runs` gives, means the caller's directory
    summary = train_encoder(groups, EncoderConfig(), cfg, "resume")
    # worker 0 died (os._exit) at step 3; Ray Train restarted it from the step-2 checkpoint and finished
    assert summary["resumed_from_step"] == 2 and summary["global_step"] == 5
    log = [json.loads(x) for x in storage.read_text(storage.join(str(tmp_path / "resume"), "train_log.jsonl")).splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [3, 4, 5]


def test_train_config_is_validated():
    with pytest.raises(ValueError, match="fp16"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="mini_batch_size"):
        TrainConfig(loss="pl", mini_batch_size=8)
    with pytest.raises(ValueError, match="cannot fill one batch"):
        train_encoder(stage1_groups(_stage1_rows(), EncoderConfig(), "full"), EncoderConfig(),
                      TrainConfig(batch_size=8), "/nonexistent/out")


def test_mini_batch_size_trains_stage1_with_gradcache():
    from synthir.dense.losses import CachedMultiPositiveDistillationLoss
    from synthir.dense.train import build_loss

    model = load_encoder(EncoderConfig())
    cached = build_loss(model, TrainConfig(mini_batch_size=4, distill_mode="gold_plus_synthetic"), "full")
    assert isinstance(cached, CachedMultiPositiveDistillationLoss) and cached.mini_batch_size == 4
    plain = build_loss(model, TrainConfig(distill_mode="gold_plus_synthetic"), "full")
    assert cached.get_config_dict() == {**plain.get_config_dict(), "mini_batch_size": 4, "mini_batch_num_tokens": None}
