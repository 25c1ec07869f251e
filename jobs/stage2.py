"""Syntriever stage 2: Ray Train alignment (partial Plackett-Luce or Bradley-Terry) from the stage-1 model.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- \
        python jobs/stage2.py --config configs/syntriever-scifact-e5-paper.yaml [--set key=value ...] [--json]

Exit status: 0 done, 2 bad config or input (the error is on stderr), 3 answers still missing (batch engine),
any other non-zero: the step failed (traceback on stderr).
"""

import sys

from synthir.cli import app

if __name__ == "__main__":
    app(["run", "syntriever", "--steps", "stage2", *sys.argv[1:]])
