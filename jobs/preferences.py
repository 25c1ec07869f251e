"""Syntriever preferences: the judge's P_compare on pairs of each top-K -> triples.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- \
        python jobs/preferences.py --config configs/syntriever-scifact-e5-paper.yaml [--set key=value ...] [--json]

Exit status: 0 done, 2 bad config or input (the error is on stderr), 3 answers still missing (batch engine),
any other non-zero: the step failed (traceback on stderr).
"""

import sys

from synthir.cli import app

if __name__ == "__main__":
    app(["run", "syntriever", "--steps", "preferences", *sys.argv[1:]])
