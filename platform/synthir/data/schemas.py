"""Arrow schemas of the tables every step exchanges. Ids are strings; metadata is a JSON string."""

import pyarrow as pa

CORPUS = pa.schema([("id", pa.string()), ("title", pa.string()), ("text", pa.string())])
QUERIES = pa.schema([("id", pa.string()), ("text", pa.string()), ("metadata", pa.string())])
QRELS = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("score", pa.int32())])
EMBEDDINGS_ID = "id"
EMBEDDINGS_VECTOR = "embedding"


def passage_text(title: str | None, text: str) -> str:
    """The one text form of a passage used in every stage: title, a space, then text (BEIR's convention)."""
    return f"{title} {text}".strip() if title else text
