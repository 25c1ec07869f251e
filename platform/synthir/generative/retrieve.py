"""Retrieval with a trained decoder: trie-constrained beam search, batched with left padding.

score(q, d) = log P(d'|q) = sum_i log P(d'_i | d'_<i, q): beam search with ``length_penalty=0`` keeps that sum as
each beam's score, and the ``num_beams`` finished beams, best first, are the ranking (Wen et al. 2025: beam 10).
``TrieLogitsProcessor`` lets a beam emit only a prefix of some document's identifier, then EOS, so every
returned beam is a document; beams beyond the number of documents, or duplicates, are dropped. Prompts are
rendered exactly as in training (``synthir.generative.sft_data.render_prompt``).

``retrieve_on_ray`` runs the same over a query table on a Ray Data actor pool (one model per actor).
"""

from __future__ import annotations

import time

from pydantic import Field

from synthir import storage
from synthir.config import StrictModel, execution_only
from synthir.dense.encoder import local_model_path
from synthir.generative.sft_data import render_prompt


class DecodeConfig(StrictModel):
    """Beam search settings (paper: beam 10, top-10)."""

    num_beams: int = Field(10, ge=1)
    top_k: int = Field(10, ge=1, description="documents returned per query (at most num_beams)")
    constrained: bool = Field(True, description="apply the identifier trie (False: free decoding, for the speed comparison)")
    max_prompt_tokens: int = Field(288, ge=8)
    batch_size: int = execution_only(8, ge=1, description="queries per generate() call")
    torch_threads: int | None = execution_only(None, ge=1)


def model_folder(path: str) -> str:
    """The genret model folder of ``path``: itself when it holds the trie, else its ``model/`` (a run step folder)."""
    from synthir.generative.trie import TRIE_FILE

    return path if storage.exists(storage.join(path, TRIE_FILE)) else storage.join(path, "model")


class GenerativeRetriever:
    """A trained genret model folder (model, tokenizer, ``genret_trie.json``) that ranks documents for queries."""

    def __init__(self, model_dir: str, device: str | None = None):
        """Load the model, its tokenizer (left padding) and its trie from ``model_dir`` (local or remote)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from synthir.generative.trie import TokenTrie  # torch + transformers: only where a model is loaded

        local = local_model_path(model_dir)  # an s3:// model is copied down once (cached)
        self.tokenizer = AutoTokenizer.from_pretrained(local, padding_side="left")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(local).to(self.device).eval()
        self.trie = TokenTrie.load(local)

    def search(self, queries: list[str], config: DecodeConfig) -> list[list[tuple[str, float]]]:
        """For each query, up to ``top_k`` (doc_id, log-probability) pairs, best first."""
        import torch
        from transformers import LogitsProcessorList

        from synthir.generative.trie import TrieLogitsProcessor

        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        beams = min(config.num_beams, len(self.trie)) if config.constrained else config.num_beams
        longest = max(len(s) for s in self.trie.sequences)
        results: list[list[tuple[str, float]]] = []
        for i in range(0, len(queries), config.batch_size):
            prompts = [render_prompt(self.tokenizer, q, config.max_prompt_tokens) for q in queries[i:i + config.batch_size]]
            batch = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
            width = batch["input_ids"].shape[1]
            processors = LogitsProcessorList([TrieLogitsProcessor(self.trie, width, self.tokenizer.pad_token_id)]
                                             if config.constrained else [])
            with torch.no_grad():
                out = self.model.generate(**batch, num_beams=max(beams, 2), num_return_sequences=max(beams, 2),
                                          do_sample=False, length_penalty=0.0, early_stopping=True,
                                          max_new_tokens=longest, logits_processor=processors,
                                          eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.tokenizer.pad_token_id,
                                          output_scores=True, return_dict_in_generate=True)
            per = max(beams, 2)
            rows = out.sequences[:, width:].tolist()
            scores = out.sequences_scores.tolist()
            for j in range(len(prompts)):
                ranked: list[tuple[str, float]] = []
                for row, score in zip(rows[j * per:(j + 1) * per], scores[j * per:(j + 1) * per]):
                    doc = self.trie.identifier(row)
                    if doc is not None and score > float("-inf") and doc not in {d for d, _ in ranked}:
                        ranked.append((doc, score))
                results.append(ranked[: config.top_k])
        return results

    def run(self, query_ids: list[str], queries: list[str], config: DecodeConfig) -> tuple[dict[str, dict[str, float]], dict]:
        """A TREC-style run ``{query_id: {doc_id: score}}`` and timing stats (queries/s)."""
        start = time.perf_counter()
        ranked = self.search(queries, config)
        wall = time.perf_counter() - start
        run = {q: {d: s for d, s in r} for q, r in zip(query_ids, ranked)}
        return run, {"queries": len(queries), "wall_s": round(wall, 2), "queries_per_s": round(len(queries) / max(wall, 1e-9), 3)}


class _RetrieveBatch:
    """Ray Data callable class: one ``GenerativeRetriever`` per actor."""

    def __init__(self, model_dir: str, config: dict):
        self.retriever = GenerativeRetriever(model_dir)
        self.config = DecodeConfig.model_validate(config)

    def __call__(self, batch: dict) -> dict:
        ranked = self.retriever.search(list(batch["query"]), self.config)
        return {"query_id": list(batch["query_id"]), "doc_ids": [[d for d, _ in r] for r in ranked],
                "scores": [[s for _, s in r] for r in ranked]}


def retrieve_on_ray(model_dir: str, queries: list[str], config: DecodeConfig, num_actors: int = 1,
                    cpus_per_actor: float = 1.0, gpus_per_actor: float = 0.0) -> list[list[tuple[str, float]]]:
    """``GenerativeRetriever.search`` for a query set on a Ray Data actor pool of ``num_actors`` models (same order)."""
    import ray.data

    rows = [{"query_id": str(i), "query": t} for i, t in enumerate(queries)]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), num_actors * 4)))
    out = ds.map_batches(_RetrieveBatch, fn_constructor_kwargs={"model_dir": model_dir, "config": config.model_dump()},
                         batch_size=config.batch_size, compute=ray.data.ActorPoolStrategy(size=num_actors),
                         num_cpus=cpus_per_actor, num_gpus=gpus_per_actor).take_all()
    by_index = {int(r["query_id"]): list(zip(r["doc_ids"], r["scores"])) for r in out}
    return [by_index[i] for i in range(len(queries))]
