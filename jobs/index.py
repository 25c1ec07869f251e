"""a serving bundle (model + faiss index + documents) from a trained stage.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- \
        python jobs/index.py --run s3://my-bucket/synthir/syntriever/<name>/stage2-<key> [--config configs/<x>.yaml] [--set key=value ...] [--json]

Exit status: 0 done, 2 bad config or input (the error is on stderr), 3 answers still missing (batch engine),
any other non-zero: the step failed (traceback on stderr).
"""

import sys

from synthir.cli import app

if __name__ == "__main__":
    app(["index", "build", *sys.argv[1:]])
