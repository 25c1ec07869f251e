"""``synthir run genret``: the generative-retrieval recipe (Wen et al. 2025) end to end, each step skipped when done.

Steps (each also runnable alone through ``jobs/genret.py --steps ...``):

1. ``synth``: keywords, metadata and queries for every document from the teacher (``synthir.synth.genret``);
2. ``sft``: identifiers (semantic or atomic) and their trie, the Context2ID + Query2ID stream, TRL SFT on Ray Train;
3. ``mine``: the SFT model retrieves for the query-answer queries; negatives = documents ranked above the positive;
4. ``rpo``: DPO + NLL from the SFT model on the mined pairs (TRL DPOTrainer on Ray Train);
5. ``eval``: HIT@k, MAP@10, MRR@10 on the test split for BM25, the dense base encoder, and the model after SFT
   and after RPO; a table and a PNG plot.

Evaluation is document-level over the corpus's documents; with ``corpus.collapse_identical`` (default) byte-
identical documents are one document and their qrels are merged, as PIR AGNews needs (230 distinct texts among
500 documents). Step outputs live under ``<storage>/genret/<name>/`` in folders keyed by the hash of every
setting they depend on, so changing an RPO setting retrains RPO only.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from pydantic import Field

from synthir import storage
from synthir.config import StrictModel, execution_only
from synthir.data.beir import load_beir
from synthir.dense.encode import EncodeConfig
from synthir.dense.encoder import EncoderConfig
from synthir.dense.index import IndexConfig
from synthir.eval.metrics import GENERATIVE_METRICS, mean_over_queries, per_query
from synthir.eval.report import bar_plot, format_table
from synthir.eval.run import bm25_run, dense_run
from synthir.generative.corpus import CorpusConfig, chunk_text, collapsed_dataset
from synthir.generative.ids import IdentifierConfig, add_atomic_tokens, atomic_ids, identifier_tokens, semantic_ids
from synthir.generative.mine import mined_pairs, random_pairs
from synthir.generative.retrieve import DecodeConfig, GenerativeRetriever, retrieve_on_ray
from synthir.generative.rpo import RPOConfig, preference_rows, train_rpo
from synthir.generative.sft_data import SFTDataConfig, build_examples
from synthir.generative.train import DecoderTrainConfig, load_tokenizer, train_decoder
from synthir.generative.trie import TokenTrie
from synthir.manifest import Manifest
from synthir.pipelines.steps import StepTimer
from synthir.pipelines.steps import step_key as _key
from synthir.runtime import RayConfig, init_ray
from synthir.sparse.bm25 import BM25Config
from synthir.synth.genret import GenretSynthConfig, synthesize_genret
from synthir.train_loop import MARKER

log = logging.getLogger(__name__)
STEPS = ("synth", "sft", "mine", "rpo", "eval")
TABLE_METRICS = ["hit@1", "hit@5", "hit@10", "mrr@10", "map@10"]


class MiningOptions(StrictModel):
    """Which query-answer queries the SFT model retrieves for (paper: all of them)."""

    queries: int | None = Field(None, ge=1, description="a random subset of the query-answer queries (None: all)")
    seed: int = 0


class GenretSubsample(StrictModel):
    """A smaller run: some test queries, their documents, and random other documents (said in the output)."""

    test_queries: int | None = Field(None, ge=1, description="random test queries kept; None: all")
    documents: int | None = Field(None, ge=1, description="documents kept (every kept query's gold ones first); None: all")
    seed: int = 0


def subsample(dataset: Any, split: str, config: GenretSubsample) -> Any:
    """``dataset`` cut to ``config``'s test queries and documents (unchanged when nothing is set)."""
    import pyarrow as pa

    from synthir.data.beir import RetrievalDataset

    if config.test_queries is None and config.documents is None:
        return dataset
    rng = random.Random(config.seed)
    qrels = dataset.qrels_dict(split)
    qids = sorted(qrels)
    if config.test_queries is not None and config.test_queries < len(qids):
        qids = sorted(rng.sample(qids, config.test_queries))
    gold = sorted({d for q in qids for d in qrels[q]})
    others = sorted(set(dataset.corpus["id"].to_pylist()) - set(gold))
    extra = max(0, (config.documents or len(gold) + len(others)) - len(gold))
    keep = set(gold) | set(rng.sample(others, min(extra, len(others))))
    table = dataset.qrels[split]
    return RetrievalDataset(name=dataset.name, root=dataset.root, queries=dataset.queries,
                            corpus=dataset.corpus.filter(pa.array([d in keep for d in dataset.corpus["id"].to_pylist()])),
                            qrels={split: table.filter(pa.compute.is_in(table["query_id"], pa.array(qids)))})


class GenretConfig(StrictModel):
    """The whole generative-retrieval run."""

    name: str = "allsides-smollm2"
    dataset: str = Field("allsides", description="a bundled PIR task (allsides, agnews) or a BEIR-layout path/URI")
    eval_split: str = "test"
    storage: str = execution_only("./runs")
    corpus: CorpusConfig = CorpusConfig()
    ids: IdentifierConfig = IdentifierConfig()
    synth: GenretSynthConfig = GenretSynthConfig()
    sft_data: SFTDataConfig = SFTDataConfig()
    sft: DecoderTrainConfig = DecoderTrainConfig()
    decode: DecodeConfig = DecodeConfig()
    mining: MiningOptions = MiningOptions()
    rpo: RPOConfig | None = RPOConfig()
    baselines: list[str] = Field(default_factory=lambda: ["bm25", "dense_base"], description="bm25 and/or dense_base")
    encoder: EncoderConfig = EncoderConfig()
    encode: EncodeConfig = EncodeConfig()
    index: IndexConfig = IndexConfig()
    subsample: GenretSubsample = GenretSubsample()
    decode_actors: int = execution_only(0, ge=0, description="0: decode (mining, evaluation) in the driver; N: on a "
                                        "Ray Data pool of N model replicas")
    decode_gpus: float = execution_only(0.0, ge=0, description="GPUs per decoding replica")
    eval_metrics: list[str] = Field(default_factory=lambda: list(GENERATIVE_METRICS))
    ray: RayConfig = execution_only(RayConfig())


class GenretPipeline:
    """Runs the steps of one :class:`GenretConfig`, reusing every output that already exists."""

    def __init__(self, config: GenretConfig):
        self.config = config
        self.root = storage.join(config.storage, "genret", config.name)
        dataset = f"pir/{config.dataset}" if "/" not in config.dataset else config.dataset
        raw = load_beir(dataset, splits=(config.eval_split,))
        full = collapsed_dataset(raw)[0] if config.corpus.collapse_identical else raw
        self.dataset = subsample(full, config.eval_split, config.subsample)
        self.raw_documents, self.distinct_documents = raw.corpus.num_rows, full.corpus.num_rows
        cut = self.dataset.corpus.num_rows < full.corpus.num_rows
        self.synth_config = config.synth.model_copy(update={
            "dataset": config.dataset, "storage": config.storage, "corpus": config.corpus,
            "documents": self.dataset.corpus["id"].to_pylist() if cut else None})
        self.synth_key = _key(self.synth_config)
        self.sft_key = _key(self.synth_key, config.ids, config.sft_data, config.sft)
        self.sft_dir = storage.join(self.root, f"sft-{self.sft_key}")
        self.rpo_key = _key(self.sft_key, config.decode, config.mining, config.rpo)
        self.rpo_dir = storage.join(self.root, f"rpo-{self.rpo_key}")
        self._timed = StepTimer()
        self.timings = self._timed.timings

    def synth(self) -> dict:
        """Documents (keywords, metadata) and synthetic queries; answers come from the response store on reruns."""
        self.synth_summary = synthesize_genret(self.synth_config)
        return self.synth_summary

    def tables(self) -> tuple[Any, Any]:
        """The synthesis tables (documents, queries)."""
        if not hasattr(self, "synth_summary"):
            self.synth()
        s = self.synth_summary
        return storage.read_table(s["documents_table"]), storage.read_table(s["queries_table"])

    def identifiers(self, documents: Any) -> tuple[dict[str, str], int]:
        """``{doc_id: identifier}`` for every document, and how many fell back to their doc id (no keywords)."""
        doc_ids = self.dataset.corpus["id"].to_pylist()
        if self.config.ids.kind == "atomic":
            return atomic_ids(doc_ids), 0
        keywords = dict(zip(documents["doc_id"].to_pylist(), documents["keywords"].to_pylist()))
        fallbacks = [d for d in doc_ids if not keywords.get(d)]
        return semantic_ids({d: keywords.get(d) or [d] for d in doc_ids}, self.config.ids), len(fallbacks)

    def sft(self) -> dict:
        """Identifiers, trie and SFT stream, then SFT on Ray Train (skipped when the model exists)."""
        if storage.exists(storage.join(self.sft_dir, MARKER)):
            return storage.read_json(storage.join(self.sft_dir, MARKER))
        documents, queries = self.tables()
        identifiers, fallbacks = self.identifiers(documents)
        tokenizer = load_tokenizer(self.config.sft.base_model)
        if self.config.ids.kind == "atomic":  # the Ray Train worker resizes the model's embeddings to match
            add_atomic_tokens(tokenizer, list(identifiers.values()))
        doc_ids = list(identifiers)
        trie = TokenTrie([identifier_tokens(tokenizer, identifiers[d]) for d in doc_ids], doc_ids, tokenizer.eos_token_id)
        passages = self.dataset.passages()
        chunks = [(d, c) for d in doc_ids for c in chunk_text(passages[d], tokenizer, self.config.corpus.chunk_tokens,
                                                               self.config.corpus.max_chunks_per_doc)]
        rows = [(d, k, q) for d, k, q in zip(queries["doc_id"].to_pylist(), queries["kind"].to_pylist(),
                                              queries["query"].to_pylist()) if d in identifiers]
        examples = build_examples(tokenizer, chunks, rows, identifiers, self.config.sft_data)
        storage.write_json(storage.join(self.sft_dir, "identifiers.json"), identifiers)
        init_ray(self.config.ray)
        summary = train_decoder(examples, tokenizer, trie, self.config.sft, self.sft_dir, desc="SFT")
        kinds = [e["kind"] for e in examples]
        summary.update(keyword_fallbacks=fallbacks, context2id_examples=kinds.count("context2id"),
                       query2id_examples=len(kinds) - kinds.count("context2id"), chunks=len(chunks))
        storage.write_json(storage.join(self.sft_dir, MARKER), summary)  # the counts travel with the model
        return summary

    def search(self, model_dir: str, queries: list[str]) -> list[list[tuple[str, float]]]:
        """Ranked (doc_id, log-prob) lists for ``queries``: in the driver, or on Ray Data with ``decode_actors``."""
        if self.config.decode_actors:
            init_ray(self.config.ray)
            return retrieve_on_ray(model_dir, queries, self.config.decode, self.config.decode_actors,
                                   gpus_per_actor=self.config.decode_gpus)
        return GenerativeRetriever(model_dir).search(queries, self.config.decode)

    def model_dir(self, stage: str) -> str:
        """The published model folder of ``sft`` or ``rpo``."""
        return storage.join(self.sft_dir if stage == "sft" else self.rpo_dir, "model")

    def mine(self) -> dict:
        """The SFT model's rankings for the query-answer queries, and the preference pairs they give."""
        uri = storage.join(self.rpo_dir, "mined.json")
        if storage.exists(uri):
            return storage.read_json(uri)
        _, queries = self.tables()
        qa = [(q, d) for q, d, k in zip(queries["query"].to_pylist(), queries["doc_id"].to_pylist(),
                                        queries["kind"].to_pylist()) if k == "query_answer"]
        known = set(self.dataset.corpus["id"].to_pylist())
        qa = [(q, d) for q, d in qa if d in known]
        if self.config.mining.queries and self.config.mining.queries < len(qa):
            qa = random.Random(self.config.mining.seed).sample(qa, self.config.mining.queries)
        if not qa:
            raise ValueError("no query-answer queries to mine with: keep synth task 'query_answer'")
        start = time.perf_counter()
        ranked = [[d for d, _ in r] for r in self.search(self.model_dir("sft"), [q for q, _ in qa])]
        rpo = self.config.rpo or RPOConfig()
        pairs, counts = mined_pairs(qa, ranked, rpo.depth)
        if rpo.negatives == "random":
            pairs = random_pairs(pairs, self.dataset.corpus["id"].to_pylist(), rpo.seed)
        out = {"pairs": pairs, "counts": counts, "wall_s": round(time.perf_counter() - start, 2)}
        storage.write_json(uri, out)
        return out

    def rpo(self, mined: dict) -> dict:
        """RPO from the SFT model on the mined pairs."""
        identifiers = storage.read_json(storage.join(self.sft_dir, "identifiers.json"))
        tokenizer = load_tokenizer(self.model_dir("sft"))
        rows = preference_rows(mined["pairs"], identifiers, tokenizer, self.config.rpo.max_prompt_tokens)
        init_ray(self.config.ray)
        return train_rpo(rows, self.model_dir("sft"), self.config.rpo, self.rpo_dir, desc="RPO")

    def _queries(self) -> tuple[list[str], list[str]]:
        qrels = self.dataset.qrels_dict(self.config.eval_split)
        table = self.dataset.split_queries(self.config.eval_split)
        ids, texts = table["id"].to_pylist(), table["text"].to_pylist()
        pairs = [(i, t) for i, t in zip(ids, texts) if i in qrels]
        return [i for i, _ in pairs], [t for _, t in pairs]

    def evaluate(self, system: str) -> dict[str, Any]:
        """Metrics (and per-query scores, timing) of ``system``: bm25, dense_base, genret_sft or genret_rpo."""
        folder = {"genret_sft": self.sft_dir, "genret_rpo": self.rpo_dir}.get(system, self.root)
        uri = storage.join(folder, f"eval-{system}-{self.config.eval_split}-{_key(self.config.decode, self.config.subsample, self.config.corpus.collapse_identical, self.config.eval_metrics)}.json")
        if storage.exists(uri):
            return storage.read_json(uri)
        qids, texts = self._queries()
        qrels = {q: self.dataset.qrels_dict(self.config.eval_split)[q] for q in qids}
        start = time.perf_counter()
        if system == "bm25":
            run = bm25_run(self.dataset, self.config.eval_split, BM25Config(), 10)
        elif system == "dense_base":
            init_ray(self.config.ray)
            run, _ = dense_run(self.dataset, self.config.eval_split, self.config.encoder, self.config.encode,
                               self.config.index, self.config.storage, 10)
        else:
            ranked = self.search(self.model_dir("sft" if system == "genret_sft" else "rpo"), texts)
            run = {q: dict(r) for q, r in zip(qids, ranked)}
        wall = time.perf_counter() - start
        scores = per_query(qrels, {q: run.get(q, {}) for q in qids}, self.config.eval_metrics)
        out = {"row": system, **mean_over_queries(scores, self.config.eval_metrics), "wall_s": round(wall, 2),
               "queries_per_s": round(len(qids) / max(wall, 1e-9), 3), "per_query": scores}
        storage.write_json(uri, out)
        return out

    def run(self, steps: tuple[str, ...] = STEPS) -> dict:
        """Run ``steps`` in order; returns the summary (rows per system, timings, counts)."""
        unknown = sorted(set(steps) - set(STEPS))
        if unknown:
            raise ValueError(f"unknown steps {unknown}; steps are {list(STEPS)}")
        manifest = Manifest("run/genret", self.config, self.root)
        out: dict[str, Any] = {"documents": self.dataset.corpus.num_rows, "raw_documents": self.raw_documents,
                               "distinct_documents": self.distinct_documents,
                               "test_queries": len(self.dataset.qrels_dict(self.config.eval_split)),
                               "sft_dir": self.sft_dir, "rpo_dir": self.rpo_dir}
        if "synth" in steps or "sft" in steps:
            s = self._timed("synth", self.synth)
            out["synth"] = {k: s[k] for k in ("documents", "queries", "parse_failures", "requests_sent", "from_store")}
        if "sft" in steps:
            out["sft"] = self._timed("sft", self.sft)
        if self.config.rpo is not None:
            if "mine" in steps or "rpo" in steps:
                mined = self._timed("mine", self.mine)
                out["mine"] = {**mined["counts"], "wall_s": mined["wall_s"]}
            if "rpo" in steps:
                out["rpo"] = self._timed("rpo", self.rpo, mined)
        rows = []
        if "eval" in steps:
            systems = list(self.config.baselines)
            systems += ["genret_sft"] if storage.exists(storage.join(self.sft_dir, MARKER)) else []
            systems += ["genret_rpo"] if self.config.rpo is not None and storage.exists(storage.join(self.rpo_dir, MARKER)) else []
            for system in systems:
                result = self._timed(f"eval_{system}", self.evaluate, system)
                rows.append({k: v for k, v in result.items() if k != "per_query"})
        out["rows"], out["timings_s"] = rows, self.timings
        if rows:
            metrics = [m for m in TABLE_METRICS if m in self.config.eval_metrics]
            out["plot"] = bar_plot(rows, "row", metrics, storage.join(self.root, "hits.png"),
                                   title=f"Generative retrieval on {self.config.dataset} ({self.config.eval_split})")
            out["table"] = format_table(rows, ["row", *metrics, "queries_per_s", "wall_s"], percent=metrics)
        storage.write_json(storage.join(self.root, "summary.json"), {k: v for k, v in out.items() if k != "table"})
        manifest.metrics({f"{r['row']}/{m}": r[m] for r in rows for m in self.config.eval_metrics if m in r})
        manifest.data["summary"] = {k: v for k, v in out.items() if k != "table"}
        manifest.write()
        return out
