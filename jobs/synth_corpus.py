"""corpus-scale synthesis: one prompt over every row of a Parquet corpus into Parquet parts.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- \
        python jobs/synth_corpus.py --config configs/synth-corpus-gpu.yaml [--set key=value ...] [--json]

Exit status: 0 done, 2 bad config or input (the error is on stderr), 3 answers still missing (batch engine),
any other non-zero: the step failed (traceback on stderr).
"""

import sys

from synthir.cli import app

if __name__ == "__main__":
    app(["synth", "corpus", *sys.argv[1:]])
