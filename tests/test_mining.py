"""Corpus-mined hard negatives for stage 1 (issue 12): gold never mined, the base encoder's ranking matches
sentence-transformers' ``mine_hard_negatives``, BM25's matches bm25s searched directly."""

import pytest

from synthir.config import load_config
from synthir.pipelines.syntriever import SyntrieverConfig, SyntrieverPipeline


def _pipeline(root, tmp_path) -> SyntrieverPipeline:
    """A pipeline whose 'training' split is the mini SciFact test split (40 queries, 200 documents)."""
    return SyntrieverPipeline(load_config(SyntrieverConfig, None, [
        f"dataset={root}", "train_split=test", "eval_split=test", f"storage={tmp_path}", "ray.num_cpus=2"]))


def _single_gold(pipe) -> dict[str, str]:
    """Queries with exactly one gold document (mine_hard_negatives takes one positive per anchor): {qid: doc}."""
    qrels = pipe.dataset.qrels_dict("test")
    return {q: next(iter(g)) for q, g in qrels.items() if len(g) == 1}


@pytest.mark.slow
def test_base_encoder_negatives_are_sentence_transformers_mine_hard_negatives(ray_local, scifact_mini, tmp_path):
    import datasets
    from sentence_transformers.util import mine_hard_negatives

    from synthir.dense.encoder import load_encoder

    pipe = _pipeline(scifact_mini, tmp_path)
    mined = pipe.hard_negatives(3, "base")
    passages = pipe.dataset.passages()
    gold = pipe.dataset.qrels_dict("test")
    assert set(mined) == set(gold) and all(len(v) == 3 for v in mined.values())
    assert not any(passages[d] in mined[q] for q, g in gold.items() for d in g)
    queries = dict(zip(pipe.dataset.queries["id"].to_pylist(), pipe.dataset.queries["text"].to_pylist()))
    single = _single_gold(pipe)
    assert len(single) >= 30
    ref = mine_hard_negatives(
        datasets.Dataset.from_dict({"anchor": [queries[q] for q in single], "positive": [passages[d] for d in single.values()]}),
        load_encoder(pipe.config.encoder), corpus=list(passages.values()), num_negatives=3, range_max=10,
        sampling_strategy="top", output_format="n-tuple", verbose=False)
    theirs = {row["anchor"]: [row[f"negative_{i}"] for i in (1, 2, 3)] for row in ref}
    ours = {queries[q]: mined[q] for q in single}
    assert theirs == {a: ours[a] for a in theirs} and len(theirs) >= 30


def test_bm25_negatives_are_the_best_bm25_documents_that_are_not_gold(scifact_mini, tmp_path):
    import bm25s
    import Stemmer

    from synthir.sparse.bm25 import BM25Config

    pipe = _pipeline(scifact_mini, tmp_path)
    mined = pipe.hard_negatives(4, "bm25")
    passages = pipe.dataset.passages()
    ids, texts = list(passages), list(passages.values())
    gold = pipe.dataset.qrels_dict("test")
    cfg = BM25Config()
    stemmer = Stemmer.Stemmer(cfg.stemmer)
    model = bm25s.BM25(k1=cfg.k1, b=cfg.b, method=cfg.method)
    model.index(bm25s.tokenize(texts, stopwords=cfg.stopwords, stemmer=stemmer, show_progress=False), show_progress=False)
    queries = pipe.dataset.split_queries("test")
    tokens = bm25s.tokenize(queries["text"].to_pylist(), stopwords=cfg.stopwords, stemmer=stemmer, show_progress=False)
    moved = 0
    for qid, q_tokens in zip(queries["id"].to_pylist(), bm25s.tokenization.convert_tokenized_to_string_list(tokens)):
        scores = model.get_scores(q_tokens)  # every document's score, ranked here by (-score, doc id)
        ranked = sorted((i for i in range(len(ids)) if scores[i] > 0), key=lambda i: (-scores[i], ids[i]))
        expected = [texts[i] for i in ranked if ids[i] not in gold[qid]][:4]
        assert mined[qid] == expected, qid
        moved += [texts[i] for i in ranked[:4]] != expected  # a gold document was in BM25's top 4 and was skipped
    assert moved >= 10  # SciFact's gold is often BM25's top hit, so the exclusion is exercised
