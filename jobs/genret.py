"""The generative-retrieval recipe (synth -> sft -> mine -> rpo -> eval), each step reused when done; --steps picks some.

    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- \
        python jobs/genret.py --config configs/genret-allsides-mistral.yaml [--set key=value ...] [--json]

Exit status: 0 done, 2 bad config or input (the error is on stderr), 3 answers still missing (batch engine),
any other non-zero: the step failed (traceback on stderr).
"""

import sys

from synthir.cli import app

if __name__ == "__main__":
    app(["run", "genret", *sys.argv[1:]])
