"""`ray job submit -- python jobs/eval.py --config configs/eval-scifact-e5.yaml [--set k=v ...] [--json]`."""

from synthir.cli import app

if __name__ == "__main__":
    app(["eval", *__import__("sys").argv[1:]])
