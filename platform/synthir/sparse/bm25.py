"""BM25 baseline with bm25s (Lucene scoring, English Snowball stemming and stop words)."""

from __future__ import annotations

from pydantic import Field

from synthir.config import StrictModel


class BM25Config(StrictModel):
    """BM25 parameters; the defaults are Anserini's (k1 0.9, b 0.4) that BEIR's BM25 numbers use."""

    k1: float = Field(0.9, gt=0)
    b: float = Field(0.4, ge=0, le=1)
    method: str = "lucene"
    stemmer: str | None = "english"
    stopwords: str | None = "en"


class BM25Retriever:
    """A bm25s index over passages, searched into runs."""

    def __init__(self, doc_ids: list[str], passages: list[str], config: BM25Config | None = None):
        import bm25s

        self.config = config or BM25Config()
        self.doc_ids = list(doc_ids)
        self._stemmer = self._make_stemmer()
        tokens = bm25s.tokenize(passages, stopwords=self.config.stopwords, stemmer=self._stemmer, show_progress=False)
        self.model = bm25s.BM25(k1=self.config.k1, b=self.config.b, method=self.config.method)
        self.model.index(tokens, show_progress=False)

    def _make_stemmer(self):
        if not self.config.stemmer:
            return None
        import Stemmer

        return Stemmer.Stemmer(self.config.stemmer)

    def search_run(self, query_ids: list[str], queries: list[str], k: int) -> dict[str, dict[str, float]]:
        """Top-``k`` results for each query as a run ``{query_id: {doc_id: score}}``."""
        import bm25s

        tokens = bm25s.tokenize(queries, stopwords=self.config.stopwords, stemmer=self._stemmer, show_progress=False)
        k = min(k, len(self.doc_ids))
        rows, scores = self.model.retrieve(tokens, k=k, show_progress=False, n_threads=0)
        return {
            q: {self.doc_ids[r]: float(s) for r, s in zip(row, srow) if s > 0}
            for q, row, srow in zip(query_ids, rows, scores)
        }
