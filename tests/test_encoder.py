"""Encoder config: the bundled model loads offline, prefixes reach the model, pooling can be rebuilt."""

import numpy as np

from synthir.dense.encoder import EncoderConfig, encode_passages, encode_queries, load_encoder


def test_prefixes_and_pooling():
    plain = EncoderConfig()
    model = load_encoder(plain)
    assert model.get_sentence_embedding_dimension() == 384 and model.max_seq_length == 256
    text = ["Vitamin D deficiency is linked to bone fractures."]
    q = encode_queries(model, plain, text)
    assert q.shape == (1, 384) and np.isclose(np.linalg.norm(q), 1.0, atol=1e-5)
    e5 = EncoderConfig(query_prefix="query: ", passage_prefix="passage: ")
    assert np.allclose(encode_queries(model, e5, text), encode_queries(model, plain, ["query: " + text[0]]), atol=1e-5)
    assert np.allclose(encode_passages(model, e5, text), encode_passages(model, plain, ["passage: " + text[0]]), atol=1e-5)
    assert not np.allclose(encode_queries(model, e5, text), q, atol=1e-3)
    # MiniLM's own pooling is mean pooling: rebuilding it explicitly gives the same vectors; CLS does not.
    mean = EncoderConfig(pooling="mean")
    assert np.allclose(encode_queries(load_encoder(mean), mean, text), q, atol=1e-5)
    cls = EncoderConfig(pooling="cls")
    assert not np.allclose(encode_queries(load_encoder(cls), cls, text), q, atol=1e-3)
