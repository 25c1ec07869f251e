"""A real multi-process Ray cluster on this machine: a head (no CPUs) and separate worker-node processes.

Jobs go in through the Job Submission SDK with the repository as ``working_dir`` and ``cluster/runtime_env.yaml``,
as ``ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml`` sends them; their outputs land in a
bucket on the local SeaweedFS S3 server. The second test kills a worker node (every process of it, SIGKILL) in the
middle of a Ray Train run and shows the run resume from its last checkpoint in S3 on a replacement node.
Every process a node started is killed at the end, and the tests check that none is left.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

from synthir import storage
from synthir.synth.corpus import read_output

from conftest import _free_ports

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.s3]


class Node:
    """One ``ray start --block`` process (head or worker) and everything it spawned."""

    def __init__(self, args: list[str], env: dict, log: Path):
        self.log = log
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--block", *args], env=env,
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.seen: set[int] = {self.proc.pid}

    def tree(self) -> list[psutil.Process]:
        """The node's processes now (raylet, GCS, dashboard, workers, actors such as ray::TrainController)."""
        try:
            procs = [psutil.Process(self.proc.pid)]
            procs += procs[0].children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.seen |= {p.pid for p in procs}
        return procs

    def kill(self) -> None:
        """SIGKILL every process of the node, as a lost machine would."""
        for p in self.tree():
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(30)


class LocalCluster:
    """A head without CPUs plus worker nodes, every port chosen free, sharing one short temp dir."""

    def __init__(self, tmp: Path, s3: dict):
        self.tmp = tmp
        self.temp_dir = tempfile.mkdtemp(prefix="rc-", dir="/tmp")  # unix socket paths must stay short
        self.temp_dirs = [self.temp_dir]
        venv_bin = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", "RAY_AUTH_MODE": "disabled",
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_health_check_period_ms": "500",
                    "RAY_health_check_failure_threshold": "4", "AWS_ENDPOINT_URL": s3["endpoint"],
                    "AWS_ACCESS_KEY_ID": "synthir", "AWS_SECRET_ACCESS_KEY": "synthir-secret", "AWS_REGION": "us-east-1"}
        self.env.pop("RAY_ADDRESS", None)
        gcs, dash, client, *rest = _free_ports(9)
        self.gcs, self.dashboard = f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}"
        self.nodes: list[Node] = []
        self.head = self._start("head", ["--head", f"--port={gcs}", "--num-cpus=0", "--include-dashboard=true",
                                         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                                         f"--ray-client-server-port={client}", f"--temp-dir={self.temp_dir}"], rest)
        self._wait_for_dashboard()
        self.worker = self.add_worker()

    def _start(self, name: str, args: list[str], ports: list[int]) -> Node:
        node_mgr, obj_mgr, agent, agent_grpc, metrics, env_agent = ports[:6]
        args += ["--node-ip-address=127.0.0.1", f"--node-manager-port={node_mgr}", f"--object-manager-port={obj_mgr}",
                 f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
                 f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={env_agent}", "--disable-usage-stats"]
        node = Node(args, self.env, self.tmp / f"{name}-{len(self.nodes)}.log")
        self.nodes.append(node)
        return node

    def add_worker(self, cpus: int = 2) -> Node:
        """Start a worker node (a separate raylet with its own ports) and wait until the head sees it."""
        before = self._alive_nodes()
        ports = _free_ports(6)
        workers = _free_ports(1)[0]
        while any(workers <= p <= workers + 200 for p in ports):  # Ray refuses a worker range holding its own ports
            workers = _free_ports(1)[0]
        # each node its own temp dir, as on separate machines: nodes that shared one would share runtime_resources/,
        # and one node's runtime-env agent would delete a working_dir another node's processes still run in
        temp_dir = tempfile.mkdtemp(prefix="rc-", dir="/tmp")
        self.temp_dirs.append(temp_dir)
        node = self._start("worker", [f"--address={self.gcs}", f"--num-cpus={cpus}", f"--min-worker-port={workers}",
                                      f"--max-worker-port={workers + 200}", f"--temp-dir={temp_dir}"], ports)
        deadline = time.time() + 90
        while self._alive_nodes() <= before:
            assert node.proc.poll() is None, node.log.read_text()[-3000:]
            assert time.time() < deadline, "the worker node did not join"
            time.sleep(0.5)
        return node

    def _alive_nodes(self) -> int:
        import httpx

        try:
            nodes = httpx.get(f"{self.dashboard}/nodes?view=summary", timeout=5).json()["data"]["summary"]
        except Exception:
            return 0
        return sum(1 for n in nodes if n.get("raylet", {}).get("state") == "ALIVE")

    def _wait_for_dashboard(self) -> None:
        import httpx

        deadline = time.time() + 120
        while True:
            try:
                httpx.get(f"{self.dashboard}/api/version", timeout=2).raise_for_status()
                return
            except Exception:
                assert self.head.proc.poll() is None, self.head.log.read_text()[-3000:]
                assert time.time() < deadline, "the head's dashboard did not come up"
                time.sleep(0.5)

    def submit(self, entrypoint: str, env_vars: dict | None = None) -> str:
        """Submit a job as ``ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml`` does."""
        from ray.job_submission import JobSubmissionClient

        runtime_env = yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text())
        runtime_env["working_dir"] = str(ROOT)
        runtime_env["py_modules"] = [str(ROOT / p) for p in runtime_env["py_modules"]]  # relative to the repo root
        runtime_env["env_vars"] = {**runtime_env["env_vars"], **(env_vars or {})}
        return JobSubmissionClient(self.dashboard).submit_job(entrypoint=entrypoint, runtime_env=runtime_env)

    def wait(self, job_id: str, timeout: float = 600) -> tuple[str, str]:
        """Wait for a job to end; returns (status, logs)."""
        from ray.job_submission import JobStatus, JobSubmissionClient

        client = JobSubmissionClient(self.dashboard)
        deadline = time.time() + timeout
        while (status := client.get_job_status(job_id)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            assert time.time() < deadline, f"job {job_id} still {status}:\n{client.get_job_logs(job_id)[-4000:]}"
            time.sleep(1)
        return str(status), client.get_job_logs(job_id)

    def shutdown(self) -> list[str]:
        """Kill every node's processes; returns the ones still alive afterwards (should be none)."""
        for node in reversed(self.nodes):
            node.tree()
            node.kill()
        time.sleep(1)
        left = []
        for node in self.nodes:
            for pid in node.seen:
                try:
                    p = psutil.Process(pid)
                    if p.status() != psutil.STATUS_ZOMBIE:
                        left.append(f"{pid} {p.name()} {' '.join(p.cmdline())[:120]}")
                except psutil.NoSuchProcess:
                    pass
        for p in psutil.process_iter(["pid", "cmdline"]):
            if any(d in part for d in self.temp_dirs for part in (p.info["cmdline"] or [])):
                left.append(f"{p.pid} {' '.join(p.info['cmdline'])[:120]}")
        for d in self.temp_dirs:
            shutil.rmtree(d, ignore_errors=True)
        return left


@pytest.fixture
def cluster(tmp_path, s3_server):
    c = LocalCluster(tmp_path, s3_server)
    yield c
    left = c.shutdown()
    assert not left, f"processes left behind: {left}"


def _actors_by_node(cluster: LocalCluster) -> dict[str, set[str]]:
    """Class name -> the nodes its actors were placed on (an autoscaled actor that never got a node has none)."""
    from ray.util.state import list_actors

    out: dict[str, set[str]] = {}
    for a in list_actors(address=cluster.dashboard, limit=1000, raise_on_missing_output=False):
        if a.node_id is None:
            assert a.state in ("DEPENDENCIES_UNREADY", "PENDING_CREATION", "DEAD"), (a.class_name, a.state)
            continue
        out.setdefault(a.class_name, set()).add(a.node_id)
    return out


def test_job_submission_runs_corpus_synthesis_on_the_worker_node_into_s3(cluster, s3_server, echo_server, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = echo_server()
    local = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [f"c{i}" for i in range(120)], "text": [f"chunk {i}" for i in range(120)]}), local)
    s3_server["client"].upload_file(str(local), "synthir", "cluster-job/in/part-0.parquet")
    sets = ["input=s3://synthir/cluster-job/in/", "id_column=id", "model=echo", "storage=s3://synthir/cluster-job/runs",
            f"http.base_url={base}/v1", "min_actors=1", "max_actors=2", "batch_size=16"]
    entry = "python jobs/synth_corpus.py --config configs/synth-corpus-local.yaml " + " ".join(f"--set {shlex.quote(s)}" for s in sets) + " --json"
    status, logs = cluster.wait(cluster.submit(entry))
    assert status == "SUCCEEDED", logs[-4000:]
    summary = json.loads([line for line in logs.splitlines() if line.startswith("{")][-1])
    assert (summary["rows"], summary["requests_sent"], summary["failed"]) == (120, 120, 0)
    assert summary["output"].startswith("s3://synthir/cluster-job/runs/synth/corpus-genret_keywords-")
    rows = read_output(summary["output"])  # read back from the bucket by this process, not the job
    assert sorted(rows["id"].to_pylist()) == sorted(f"c{i}" for i in range(120))
    assert all(c.startswith("echo: ") for c in rows["content"].to_pylist())
    # the head has no CPUs: every engine actor ran on the worker node
    from ray.util.state import list_nodes

    worker_ids = {n.node_id for n in list_nodes(address=cluster.dashboard) if not n.is_head_node}
    engine_nodes = {n for cls, nodes in _actors_by_node(cluster).items() if "_AnswerRowsHTTP" in cls for n in nodes}
    assert engine_nodes and engine_nodes <= worker_ids


def test_killed_worker_node_training_resumes_from_its_s3_checkpoint(cluster, s3_server):
    store = "s3://synthir/cluster-train"
    sets = [f"storage={store}", "subsample.train_queries=96", "subsample.test_queries=8", "subsample.corpus_distractors=20",
            "stage1.train.batch_size=8", "stage1.train.save_steps=3", "stage1.train.max_failures=3",
            "stage1.train.cpus_per_worker=1", "stage1.train.torch_threads=1", "stage1.train.max_seq_length=64"]
    entry = "python jobs/stage1.py --config configs/syntriever-scifact-minilm.yaml " + " ".join(f"--set {s}" for s in sets) + " --json"
    job = cluster.submit(entry)
    client = s3_server["client"]

    def checkpoints() -> set[str]:
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket="synthir", Prefix="cluster-train/")
                for o in page.get("Contents", [])]
        return {k.split("/checkpoint_")[1].split("/")[0] for k in keys if "/checkpoint_" in k and k.endswith("trainer_state.json")}

    deadline = time.time() + 480
    while not checkpoints():
        from ray.job_submission import JobStatus, JobSubmissionClient

        status = JobSubmissionClient(cluster.dashboard).get_job_status(job)
        assert status in (JobStatus.PENDING, JobStatus.RUNNING), JobSubmissionClient(cluster.dashboard).get_job_logs(job)[-4000:]
        assert time.time() < deadline, "no checkpoint reached S3"
        time.sleep(0.5)
    time.sleep(3)  # let the controller register the uploaded checkpoint
    marker = f"{store}/syntriever/scifact-minilm-demo"
    assert not any("_SUCCESS.json" in u and "/stage1-" in u for u in storage.list_files(marker)), "training ended before the kill"
    victim = cluster.worker
    train_pids = [p.pid for p in victim.tree() if "RayTrainWorker" in " ".join(p.cmdline())]
    assert train_pids, "the training worker does not run on the worker node"
    victim.kill()  # the machine is gone: raylet, its workers, the training worker
    cluster.add_worker()  # a replacement node joins; Ray Train restarts the worker group there
    status, logs = cluster.wait(job, timeout=600)
    assert status == "SUCCEEDED", logs[-4000:]
    success = [u for u in storage.list_files(marker) if u.endswith("_SUCCESS.json") and "/stage1-" in u]
    assert len(success) == 1
    summary = storage.read_json(success[0])
    assert summary["resumed_from_step"] >= 3 and summary["resumed_from_step"] % 3 == 0
    groups = storage.read_table(success[0].replace("_SUCCESS.json", "groups.parquet")).num_rows
    assert summary["global_step"] == groups // 8  # one whole epoch (drop_last), continued, not restarted from step 0
    assert summary["resumed_from_step"] < summary["global_step"]
