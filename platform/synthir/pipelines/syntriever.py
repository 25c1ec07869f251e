"""``synthir run syntriever``: the Syntriever recipe end to end, each step skipped when its output exists.

Steps (each also runnable alone through ``jobs/syntriever.py --steps ...``):

1. ``synth``: the stage-1 table (q_cot, p+, p-, verdict) from the teacher (recorded answers, http, hf, batch);
2. ``stage1``: Ray Train on the stage-1 groups (optionally with corpus-mined hard negatives of the base model);
3. ``mine``: encode the corpus with the stage-1 model (Ray Data) and take each training query's faiss top-K;
4. ``preferences``: P_compare on pairs of each top-K -> triples (q, c+, c-);
5. ``stage2``: Ray Train from the stage-1 checkpoint with partial Plackett-Luce (or Bradley-Terry);
6. ``eval``: nDCG@1/3/5/10 of the base, stage-1 and stage-2 models on the test split; a table and a PNG plot.

Step outputs live under ``<storage>/syntriever/<name>/`` in folders keyed by the hash of every setting they
depend on, so changing a stage-2 setting retrains stage 2 only. ``subsample`` makes a CPU-sized run: fewer
training queries, and a corpus cut to the relevant documents plus N random distractors (said in the output).
"""

from __future__ import annotations

import logging
import random
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from synthir import storage
from synthir.config import StrictModel, added_later, execution_only
from synthir.data.beir import RetrievalDataset, load_beir
from synthir.dense.encode import EncodeConfig
from synthir.dense.encoder import EncoderConfig
from synthir.dense.groups import Stage1Columns, stage1_groups, stage2_groups
from synthir.dense.index import IndexConfig
from synthir.dense.mine import top_k
from synthir.dense.train import TrainConfig, train_encoder
from synthir.eval.metrics import mean_over_queries, per_query
from synthir.eval.report import bar_plot, format_table
from synthir.eval.run import bm25_run, dense_run
from synthir.manifest import Manifest
from synthir.pipelines.steps import StepTimer
from synthir.pipelines.steps import step_key as _key
from synthir.runtime import RayConfig, init_ray
from synthir.sparse.bm25 import BM25Config
from synthir.synth.answer import MissingAnswers
from synthir.synth.preferences import PreferenceConfig, synthesize_preferences
from synthir.synth.syntriever import Stage1Config, synthesize_stage1

log = logging.getLogger(__name__)
STEPS = ("synth", "stage1", "mine", "preferences", "stage2", "eval")
NDCG = ["ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10"]


class SubsampleConfig(StrictModel):
    """A smaller run: fewer training queries and a cut corpus (relevant documents + random distractors)."""

    train_queries: int | None = Field(None, ge=2, description="random training queries kept; None: all")
    test_queries: int | None = Field(None, ge=1, description="random test queries kept; None: all")
    corpus_distractors: int | None = Field(None, ge=0, description="random non-relevant documents kept; None: the full corpus")
    seed: int = 0


class Stage1Options(StrictModel):
    """Stage-1 training data and settings."""

    columns: Stage1Columns = Field("full", description="full | cot_only | pm_only | gold_only (the ablations)")
    mined_negatives: int = Field(0, ge=0, description="hard negatives per query from the corpus (gold excluded)")
    mined_by: Literal["base", "bm25"] = added_later("base", description="what mines them: the base encoder or BM25")
    train: TrainConfig = TrainConfig(loss="distill", batch_size=32, epochs=1)

    @model_validator(mode="after")
    def _mined_by_needs_negatives(self) -> "Stage1Options":
        if self.mined_by != "base" and not self.mined_negatives:
            raise ValueError(f"stage1.mined_by={self.mined_by!r} mines nothing while stage1.mined_negatives is 0")
        return self


class SyntrieverConfig(StrictModel):
    """The whole Syntriever run."""

    name: str = "scifact-minilm"
    dataset: str = "scifact"
    train_split: str = "train"
    eval_split: str = "test"
    storage: str = execution_only("./runs")
    encoder: EncoderConfig = EncoderConfig()
    teacher: Stage1Config = Stage1Config()
    subsample: SubsampleConfig = SubsampleConfig()
    stage1: Stage1Options = Stage1Options()
    mining_k: int = Field(5, ge=2, description="K of the stage-2 candidates (paper: 5)")
    preferences: PreferenceConfig = PreferenceConfig()
    stage2: TrainConfig | None = TrainConfig(loss="pl", batch_size=100, epochs=1)
    encode: EncodeConfig = EncodeConfig()
    index: IndexConfig = IndexConfig()
    eval_metrics: list[str] = Field(default_factory=lambda: list(NDCG))
    ray: RayConfig = execution_only(RayConfig())


def subsample(dataset: RetrievalDataset, config: SubsampleConfig, splits: tuple[str, ...]) -> tuple[RetrievalDataset, dict]:
    """Cut queries and corpus as configured; returns the smaller dataset and what was cut (for the output)."""
    rng = random.Random(config.seed)
    qrels = {s: dataset.qrels[s] for s in splits}
    kept_queries = {}
    for split, limit in zip(splits, (config.train_queries, config.test_queries)):
        qids = sorted(dataset.qrels_dict(split))
        if limit is not None and limit < len(qids):
            qids = sorted(rng.sample(qids, limit))
            qrels[split] = qrels[split].filter(pa.compute.is_in(qrels[split]["query_id"], pa.array(qids)))
        kept_queries[split] = len(qids)
    corpus = dataset.corpus
    if config.corpus_distractors is not None:
        relevant = {d for t in qrels.values() for d in t["doc_id"].to_pylist()}
        others = sorted(set(corpus["id"].to_pylist()) - relevant)
        keep = relevant | set(rng.sample(others, min(config.corpus_distractors, len(others))))
        corpus = corpus.filter(pa.compute.is_in(corpus["id"], pa.array(sorted(keep))))
    small = RetrievalDataset(name=dataset.name, root=dataset.root, corpus=corpus, queries=dataset.queries, qrels=qrels)
    note = {"queries": kept_queries, "corpus": corpus.num_rows, "full_corpus": dataset.corpus.num_rows}
    return small, note


class SyntrieverPipeline:
    """Runs the steps of one :class:`SyntrieverConfig`, reusing every output that already exists."""

    def __init__(self, config: SyntrieverConfig):
        self.config = config
        self.root = storage.join(config.storage, "syntriever", config.name)
        self.dataset, self.cut = subsample(load_beir(config.dataset, splits=(config.train_split, config.eval_split)),
                                           config.subsample, (config.train_split, config.eval_split))
        self.data_key = _key(config.dataset, config.subsample)
        self.stage1_key = _key(self.data_key, config.encoder, config.teacher, config.stage1)
        self.stage1_dir = storage.join(self.root, f"stage1-{self.stage1_key}")
        self.stage2_key = _key(self.stage1_key, config.mining_k, config.preferences, config.stage2)
        self.stage2_dir = storage.join(self.root, f"stage2-{self.stage2_key}")
        self._timed = StepTimer()
        self.timings = self._timed.timings

    def encoder_for(self, model_dir: str | None) -> EncoderConfig:
        """The encoder config of a trained model folder (None: the base model)."""
        if model_dir is None:
            return self.config.encoder
        return self.config.encoder.model_copy(update={"model": storage.join(model_dir, "model"), "pooling": "model"})

    def synth(self) -> pa.Table:
        """The stage-1 table for the (subsampled) training queries."""
        teacher = self.config.teacher.model_copy(update={"dataset": self.config.dataset, "split": self.config.train_split,
                                                         "storage": self.config.storage})
        summary = synthesize_stage1(teacher)
        self.synth_summary = summary
        wanted = set(self.dataset.qrels_dict(self.config.train_split))
        table = storage.read_table(summary["table"])
        return table.filter(pa.compute.is_in(table["query_id"], pa.array(sorted(wanted))))

    def retrieve(self, model_dir: str | None, split: str, k: int) -> dict[str, dict[str, float]]:
        """Top-``k`` run of a model on ``split`` over the (cut) corpus; embeddings cached per model and corpus."""
        init_ray(self.config.ray)
        run, _ = dense_run(self.dataset, split, self.encoder_for(model_dir), self.config.encode, self.config.index,
                           self.config.storage, k)
        return run

    def stage1(self, table: pa.Table) -> dict:
        """Train stage 1 (skipped when its model exists)."""
        opts = self.config.stage1
        mined = self.hard_negatives(opts.mined_negatives, opts.mined_by) if opts.mined_negatives else None
        groups = stage1_groups(table, self.config.encoder, opts.columns, mined, opts.mined_negatives)
        train = opts.train if opts.columns != "gold_only" else TrainConfig.model_validate(
            {**opts.train.model_dump(), "loss": "infonce"})  # validated: gold-only is InfoNCE, which has no GradCache
        init_ray(self.config.ray)
        return train_encoder(groups, self.config.encoder, train, self.stage1_dir, layout=opts.columns,
                             desc="stage 1 training")

    def hard_negatives(self, n: int, mined_by: str) -> dict[str, list[str]]:
        """``n`` corpus passages per training query, ranked highest by the base encoder or BM25, gold excluded."""
        split, k = self.config.train_split, n + 20
        if mined_by == "bm25":
            run = bm25_run(self.dataset, split, BM25Config(), k)
        else:
            run = self.retrieve(None, split, k)
        hard = top_k(run, n, self.dataset.qrels_dict(split))
        ranked = dict(zip(hard["query_id"].to_pylist(), hard["doc_ids"].to_pylist()))
        short = [q for q, ds in ranked.items() if len(ds) < n]
        if short:  # BM25 leaves out documents sharing no term with the query
            raise ValueError(f"stage1.mined_negatives={n}: {mined_by} finds fewer non-gold documents for {len(short)} "
                             f"{self.config.train_split} queries of {self.config.dataset} (e.g. {short[:3]}); mine fewer")
        passages = self.dataset.passages()
        return {q: [passages[d] for d in ds] for q, ds in ranked.items()}

    def mine(self) -> pa.Table:
        """The stage-1 model's top-K per training query (gold included: the LLM judges every candidate)."""
        uri = storage.join(self.stage1_dir, f"topk-{self.config.mining_k}-{self.data_key}.parquet")
        if storage.exists(uri):
            return storage.read_table(uri)
        table = top_k(self.retrieve(self.stage1_dir, self.config.train_split, self.config.mining_k), self.config.mining_k)
        storage.write_table(uri, table)
        return table

    def preferences(self, topk: pa.Table) -> dict:
        """Triples (q, c+, c-) from the judge (answers come from the store on reruns)."""
        prefs = self.config.preferences.model_copy(update={"storage": self.config.storage})
        queries = dict(zip(self.dataset.queries["id"].to_pylist(), self.dataset.queries["text"].to_pylist()))
        uri = storage.join(self.stage2_dir, "triples.parquet")
        try:
            return synthesize_preferences(topk, queries, self.dataset.passages(), prefs, uri,
                                          qrels=self.dataset.qrels_dict(self.config.train_split))
        except MissingAnswers as e:  # name the run whose top-K these are, so their answers find the right run
            storage.write_json(e.uri + ".meta.json", self.export_meta(prefs))
            raise

    def export_meta(self, prefs: PreferenceConfig) -> dict:
        """What a comparison export was made from: the stage-1 model, its config hash, the top-K and the judge."""
        return {"stage1_model": storage.join(self.stage1_dir, "model"), "stage1_key": self.stage1_key,
                "data_key": self.data_key, "dataset": self.config.dataset, "split": self.config.train_split,
                "encoder": self.config.encoder.model, "mining_k": self.config.mining_k,
                "pairs": prefs.pairs or "all", "judge_model": prefs.live_judge()[1], "run": self.config.name}

    def stage2(self, triples_uri: str) -> dict:
        """Train stage 2 from the stage-1 model on the triples."""
        if not storage.exists(triples_uri):
            raise ValueError(f"{triples_uri}: no preference triples; run the 'preferences' step first")
        triples = storage.read_table(triples_uri)
        need = self.config.stage2.batch_size * self.config.stage2.num_workers
        if triples.num_rows < need:
            p = self.config.preferences
            hint = (" The recorded judge answers only the pairs it recorded (see its coverage above); set "
                    "preferences.unrecorded=judge to ask the fallback judge for the rest, or lower stage2.batch_size."
                    if p.engine == "recorded" and p.unrecorded == "skip" else " Lower stage2.batch_size or judge more queries.")
            raise ValueError(f"{triples_uri}: {triples.num_rows} preference triples cannot fill one stage-2 batch of "
                             f"{self.config.stage2.batch_size} x {self.config.stage2.num_workers} worker(s).{hint}")
        groups = stage2_groups(triples, self.config.encoder)
        init_ray(self.config.ray)
        return train_encoder(groups, self.encoder_for(self.stage1_dir), self.config.stage2, self.stage2_dir,
                             desc="stage 2 training")

    def _eval_uri(self, model_dir: str | None, suffix: str) -> str:
        base = model_dir or storage.join(self.root, f"base-{_key(self.config.encoder)}")
        return storage.join(base, f"eval-{self.config.eval_split}-{self.data_key}{suffix}")

    def evaluate(self, model_dir: str | None) -> dict[str, float]:
        """The eval metrics of a model on the (cut) test split; cached next to the model."""
        uri = self._eval_uri(model_dir, ".json")
        if storage.exists(uri) and set(self.config.eval_metrics) <= set(cached := storage.read_json(uri)):
            return {m: cached[m] for m in self.config.eval_metrics}
        metrics = mean_over_queries(self.per_query(model_dir), self.config.eval_metrics)
        storage.write_json(uri, metrics)
        return metrics

    def per_query(self, model_dir: str | None) -> dict[str, dict[str, float]]:
        """The eval metrics of a model for each test query (for paired tests between runs); cached next to the model."""
        uri = self._eval_uri(model_dir, ".per-query.json")
        if storage.exists(uri):
            cached = storage.read_json(uri)
            if all(set(self.config.eval_metrics) <= set(v) for v in cached.values()):
                return {q: {m: v[m] for m in self.config.eval_metrics} for q, v in cached.items()}
        run = self.retrieve(model_dir, self.config.eval_split, 100)
        scores = per_query(self.dataset.qrels_dict(self.config.eval_split), run, self.config.eval_metrics)
        storage.write_json(uri, scores)
        return scores

    def run(self, steps: tuple[str, ...] = STEPS) -> dict:
        """Run ``steps`` in order; returns the summary (rows per stage, timings, what was subsampled)."""
        unknown = sorted(set(steps) - set(STEPS))
        if unknown:
            raise ValueError(f"unknown steps {unknown}; steps are {list(STEPS)}")
        manifest = Manifest("run/syntriever", self.config, self.root)
        rows: list[dict[str, Any]] = []
        out: dict[str, Any] = {"subsample": self.cut, "stage1_dir": self.stage1_dir, "stage2_dir": self.stage2_dir}
        if "eval" in steps:
            rows.append({"row": "base", **self._timed("eval_base", self.evaluate, None)})
        if {"synth", "stage1"} & set(steps):
            table = self._timed("synth", self.synth)
            out["synth"] = {k: self.synth_summary[k] for k in ("rows", "requests_sent", "from_store", "relabeled", "parse_failures")}
            out["train_groups_queries"] = table.num_rows
            if "stage1" in steps:
                out["stage1"] = self._timed("stage1", self.stage1, table)
        if "eval" in steps and storage.exists(storage.join(self.stage1_dir, "_SUCCESS.json")):
            s1 = storage.read_json(storage.join(self.stage1_dir, "_SUCCESS.json"))
            rows.append({"row": "stage1", **self._timed("eval_stage1", self.evaluate, self.stage1_dir),
                         "train_s": s1.get("train_runtime_s"), "examples_per_s": s1.get("examples_per_s")})
        if self.config.stage2 is not None:
            if "mine" in steps or "preferences" in steps:
                topk = self._timed("mine", self.mine)
            if "preferences" in steps:
                out["preferences"] = self._timed("preferences", self.preferences, topk)
            if "stage2" in steps:
                out["stage2"] = self._timed("stage2", self.stage2, storage.join(self.stage2_dir, "triples.parquet"))
            if "eval" in steps and storage.exists(storage.join(self.stage2_dir, "_SUCCESS.json")):
                s2 = storage.read_json(storage.join(self.stage2_dir, "_SUCCESS.json"))
                rows.append({"row": "stage2", **self._timed("eval_stage2", self.evaluate, self.stage2_dir),
                             "train_s": s2.get("train_runtime_s"), "examples_per_s": s2.get("examples_per_s")})
        out["rows"] = rows
        out["timings_s"] = self.timings
        if rows:
            out["plot"] = bar_plot(rows, "row", self.config.eval_metrics, storage.join(self.root, "ndcg.png"),
                                   title=f"Syntriever on {self.config.dataset} ({self.config.eval_split})")
            out["table"] = format_table(rows, ["row", *self.config.eval_metrics, "train_s", "examples_per_s"],
                                        percent=self.config.eval_metrics)
        storage.write_json(storage.join(self.root, "summary.json"), {k: v for k, v in out.items() if k != "table"})
        manifest.metrics({f"{r['row']}/{m}": r[m] for r in rows for m in self.config.eval_metrics if m in r})
        manifest.data["summary"] = {k: v for k, v in out.items() if k not in ("table",)}
        manifest.write()
        return out
