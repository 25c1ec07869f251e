"""Cache keys see what a step computes, not how it runs: execution-only settings never invalidate an output."""

import pytest

from synthir.config import config_hash, load_config
from synthir.pipelines.syntriever import SyntrieverConfig, SyntrieverPipeline, _key
from synthir.synth.syntriever import Stage1Config

EXECUTION = [
    "teacher.http.concurrency=128", "teacher.http.timeout_s=5", "teacher.http.max_retries=0",
    "teacher.http.base_url=http://vllm:8000/v1", "teacher.ray_actors=8", "teacher.storage=s3://b/x",
    "teacher.ray.address=auto", "storage=s3://bucket/synthir", "ray.address=auto", "encode.num_actors=4",
    "encode.batch_size=8", "encoder.batch_size=8", "stage1.train.save_steps=50", "stage1.train.max_failures=3",
    "stage1.train.cpus_per_worker=4", "preferences.http.concurrency=3", "preferences.ray_actors=2",
    "index.use_gpu=true", "ray.log_to_driver=false", "teacher.ray.log_to_driver=false", "preferences.ray.log_to_driver=false",
]
CONTENT = ["teacher.model=other-teacher", "stage1.train.lr=1e-4", "stage1.train.num_workers=2", "encoder.pooling=mean",
           "mining_k=7", "preferences.fallback_model=judge-2", "preferences.reuse_reversed=false", "subsample.train_queries=10", "teacher.max_tokens=64",
           "stage1.train.mini_batch_size=8"]


def _keys(overrides):
    cfg = load_config(SyntrieverConfig, None, list(overrides))
    data_key = _key(cfg.dataset, cfg.subsample)
    stage1 = _key(data_key, cfg.encoder, cfg.teacher, cfg.stage1)
    return stage1, _key(stage1, cfg.mining_k, cfg.preferences, cfg.stage2)


@pytest.mark.parametrize("override", EXECUTION)
def test_execution_only_settings_keep_every_step_key(override):
    assert _keys([override]) == _keys([])


@pytest.mark.parametrize("override", CONTENT)
def test_settings_that_change_outputs_change_a_key(override):
    assert _keys([override]) != _keys([])


def test_stage1_synthesis_folder_ignores_engine_execution_settings():
    base = Stage1Config(engine="http", model="m")
    assert config_hash(base) == config_hash(base.model_copy(update={"ray_actors": 4, "storage": "s3://b"}))
    assert config_hash(base) == config_hash(Stage1Config(engine="http", model="m", http={"concurrency": 256}))
    assert config_hash(base) != config_hash(Stage1Config(engine="http", model="other"))


def test_keys_made_before_the_marking_stay_the_same():
    """Default execution settings hash as they always did, so existing runs' folders are still found."""
    import hashlib
    import json

    cfg = Stage1Config()
    dump = cfg.model_dump(mode="json")
    del dump["ray"]["log_to_driver"]  # added after this key was first made (see the test below)
    legacy = hashlib.sha256(json.dumps(dump, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
    assert config_hash(cfg) == legacy


def test_the_pipeline_uses_the_same_keys(tmp_path):
    a = SyntrieverPipeline(load_config(SyntrieverConfig, None, [f"storage={tmp_path}", "subsample.train_queries=4"]))
    b = SyntrieverPipeline(load_config(SyntrieverConfig, None, [f"storage={tmp_path}", "subsample.train_queries=4",
                                                                "teacher.http.concurrency=99", "stage1.train.save_steps=7"]))
    assert (a.stage1_key, a.stage2_key) == (b.stage1_key, b.stage2_key)


def test_fields_added_later_keep_older_runs_keys_at_their_default(tmp_path):
    """ray.log_to_driver, stage1.mined_by and train.mini_batch_size came after the benchmark's runs; the keys below
    are what the code before them (commit 4dedca5) computed for these configs, so those runs' folders are still found."""
    def keys(*overrides):
        pipe = SyntrieverPipeline(load_config(SyntrieverConfig, None, [f"storage={tmp_path}", *overrides]))
        return pipe.stage1_key, pipe.stage2_key

    assert keys() == keys("ray.log_to_driver=false", "teacher.ray.log_to_driver=false") == ("983a5a637ccb", "92d095c6fe68")
    assert keys("stage1.mined_negatives=3") == ("990909824dab", "3efabeb1010a")
    assert keys("stage1.mined_negatives=3", "stage1.mined_by=bm25")[0] != "990909824dab"


def test_mined_by_without_mined_negatives_is_an_error():
    with pytest.raises(ValueError, match="mined_negatives"):
        load_config(SyntrieverConfig, None, ["stage1.mined_by=bm25"])
