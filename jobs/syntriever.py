"""`ray job submit -- python jobs/syntriever.py --config configs/syntriever-scifact-minilm.yaml [--steps stage1,eval] [--set k=v]`."""

from synthir.cli import app

if __name__ == "__main__":
    app(["run", "syntriever", *__import__("sys").argv[1:]])
