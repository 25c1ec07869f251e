"""Evaluation of BM25 or a dense encoder on a dataset split (nDCG@k, Recall@100).

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- \
        python jobs/eval.py --config configs/eval-scifact-e5.yaml [--set key=value ...] [--json]

Exit status: 0 done, 2 bad config or input (the error is on stderr), 3 answers still missing (batch engine),
any other non-zero: the step failed (traceback on stderr).
"""

import sys

from synthir.cli import app

if __name__ == "__main__":
    app(["eval", *sys.argv[1:]])
