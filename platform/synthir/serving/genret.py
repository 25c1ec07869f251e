"""Ray Serve deployment of the generative retriever: trie-constrained beam search, ``@serve.batch``-combined.

Concurrent searches reaching one replica are decoded together, as one left-padded ``generate`` call per
``decode.batch_size`` queries, with the largest ``k`` any of them asked for (at most ``decode.num_beams``: a
generative retriever ranks only the beams it kept); each request then gets its own ``k``. Decoding runs in a
thread, so the replica keeps accepting requests while a batch decodes.
"""

from __future__ import annotations

import asyncio

from ray import serve

from synthir.generative.retrieve import GenerativeRetriever, model_folder
from synthir.serving.config import GenretDeployment


@serve.deployment
class GenerativeSearcher:
    """Ranks documents for lists of queries with a trained genret model."""

    def __init__(self, options: dict):
        self.options = GenretDeployment.model_validate(options)
        import torch

        torch.set_num_threads(self.options.torch_threads or max(1, int(self.options.num_cpus)))
        self.model = model_folder(self.options.model)
        self.retriever = GenerativeRetriever(self.model)
        self.search.set_max_batch_size(self.options.batch.max_batch_size)
        self.search.set_batch_wait_timeout_s(self.options.batch.batch_wait_timeout_s)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def search(self, items: list[tuple[list[str], int]]) -> list[list[list[dict]]]:
        """Hits ``[{id, score, rank}]`` per query for each request ``(queries, k)``; scores are log-probabilities."""
        queries = [q for texts, _ in items for q in texts]
        decode = self.options.decode.model_copy(update={"top_k": max(k for _, k in items)})
        ranked = await asyncio.to_thread(self.retriever.search, queries, decode)
        out, start = [], 0
        for texts, k in items:
            rows = ranked[start:start + len(texts)]
            start += len(texts)
            out.append([[{"id": d, "score": s, "rank": r} for r, (d, s) in enumerate(row[:k], 1)] for row in rows])
        return out

    def info(self) -> dict:
        """The served model and its size."""
        return {"model": self.model, "documents": len(self.retriever.trie), "decode": self.options.decode.model_dump()}
