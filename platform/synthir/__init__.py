"""synthir: train retrievers from LLM-written synthetic data, on Ray."""

__version__ = "0.1.0"
