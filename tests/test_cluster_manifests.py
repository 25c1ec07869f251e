"""cluster/: every manifest validated against the real schemas, offline, and proof that the validation can fail.

- KubeRay kinds (RayCluster, RayJob, RayService) against the vendored CRDs (cluster/schemas/kuberay/), converted to
  JSON Schema as strictly as ``kubectl apply --validate=strict``: an unknown field is an error.
- Built-in kinds (Secret) with kubernetes-validate's bundled Kubernetes schemas (strict).
- The cluster-launcher YAML against Ray's own ray-schema.json (and Ray's ``validate_config``).
- What the manifests name: job scripts, configs (validated with the project's config models), CLI flags (parsed
  by the CLI's own parser), the Serve application (== serve/dense-gpu.yaml, args validated by ServeConfig), the
  runtime envs (constructed by Ray, merged with synthir's own ray.init env the way Ray merges them), one image tag.
"""

from __future__ import annotations

import ast
import copy
import gzip
import importlib
import json
import re
import shlex
import tomllib
import zipfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
CRD_DIR = CLUSTER / "schemas" / "kuberay"
LAUNCHER = CLUSTER / "launcher" / "aws-gpu.yaml"
RAY_KINDS = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayService": "rayservices"}
BUILTIN_KINDS = {"Secret", "ConfigMap", "Service", "ServiceAccount"}
K8S_VERSION = "1.35"
APP_DIR = "/app"  # where cluster/Dockerfile puts the repository


# ---------------------------------------------------------------------------------------------------------------
# schemas and validators


def _openapi_to_jsonschema(node, path="#"):
    """A CRD's openAPIV3Schema node as JSON Schema, strict about unknown fields.

    - ``nullable: true``: null allowed as well;
    - ``x-kubernetes-int-or-string``: integer or string;
    - ``x-kubernetes-preserve-unknown-fields``: any extra field allowed;
    - an object with ``properties`` and neither of the above nor ``additionalProperties``: no other field allowed;
    - a field guarded by CEL rules (``x-kubernetes-validations``), which cannot be evaluated offline: not allowed
      at all (the manifests do not use one), so nothing goes unchecked silently.
    """
    if not isinstance(node, dict):
        return node
    if "x-kubernetes-validations" in node:
        return {"not": {}, "$comment": "guarded by CEL rules, which are not evaluated offline"}
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: _openapi_to_jsonschema(sub, f"{path}/{name}") for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _openapi_to_jsonschema(value, f"{path}/{key}")
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_openapi_to_jsonschema(sub, path) for sub in value]
        elif key.startswith("x-kubernetes-") or key == "nullable":
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        out["type"] = [*([out["type"]] if isinstance(out["type"], str) else out["type"]), "null"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if preserve:
        out.pop("additionalProperties", None)
    elif "properties" in node and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


def _crd_schema(plural: str) -> dict:
    with gzip.open(CRD_DIR / f"ray.io_{plural}.yaml.gz", "rt") as f:
        crd = yaml.safe_load(f)
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["group"] == "ray.io"
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = _openapi_to_jsonschema(v1["schema"]["openAPIV3Schema"])
    schema["properties"]["apiVersion"] = {"const": "ray.io/v1"}
    schema["properties"]["kind"] = {"const": crd["spec"]["names"]["kind"]}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


_VALIDATORS: dict[str, jsonschema.Draft7Validator] = {}


def _ray_validator(kind: str) -> jsonschema.Draft7Validator:
    if kind not in _VALIDATORS:
        _VALIDATORS[kind] = jsonschema.Draft7Validator(_crd_schema(RAY_KINDS[kind]))
    return _VALIDATORS[kind]


def _builtin_validator(doc: dict) -> jsonschema.Draft202012Validator:
    """kubernetes-validate's bundled (offline) strict schema of a built-in kind, as a validator that reports every
    error (kubernetes_validate.validate stops at the first)."""
    from referencing import Registry, Resource

    from kubernetes_validate.utils import schema_contents

    assert tuple(map(int, K8S_VERSION.split("."))) <= tuple(map(int, kubernetes_validate.latest_version().split("."))), \
        "kubernetes-validate too old for K8S_VERSION"
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", doc["apiVersion"])
    folder = f"kubernetes-json-schema/v{K8S_VERSION}.0-local-strict"
    schema = schema_contents(f"{folder}/{doc['kind'].lower()}-{api}.json", K8S_VERSION)
    registry = Resource.from_contents(schema_contents(f"{folder}/_definitions.json", K8S_VERSION)) @ (
        Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _where(error) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "<root>"


def schema_errors(doc: dict) -> list[str]:
    """Every schema error of one manifest document, each as '<path>: <message>' (empty: valid)."""
    kind = doc.get("kind")
    if kind in RAY_KINDS:
        errors = sorted(_ray_validator(kind).iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
        return [f"{_where(e)}: {e.message}" for e in errors]
    if kind in BUILTIN_KINDS:
        errors = sorted(_builtin_validator(doc).iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
        return [f"{_where(e)}: {e.message}" for e in errors]
    raise AssertionError(f"no validator for kind {kind!r} (apiVersion {doc.get('apiVersion')!r})")


def _ray_schema() -> dict:
    with open(Path(ray.__file__).parent / "autoscaler" / "ray-schema.json") as f:
        return json.load(f)


def launcher_errors(config: dict) -> list[str]:
    """Schema errors of a cluster-launcher config (Ray's ray-schema.json), then Ray's own validate_config checks."""
    errors = sorted(jsonschema.Draft7Validator(_ray_schema()).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        return [f"{_where(e)}: {e.message}" for e in errors]
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` does before launching anything
    except Exception as e:  # noqa: BLE001 - any rejection is the answer
        return [f"validate_config: {e}"]
    return []


# ---------------------------------------------------------------------------------------------------------------
# the manifests


def _docs(path: Path) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _kuberay_docs() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in sorted(KUBERAY.glob("*.yaml")) for d in _docs(p)]


def _by_kind(kind: str) -> list[tuple[str, dict]]:
    return [(n, d) for n, d in _kuberay_docs() if d["kind"] == kind]


def _cluster_specs() -> list[tuple[str, dict]]:
    """Every RayClusterSpec in cluster/kuberay/: the RayCluster's, the RayService's, ephemeral RayJobs'."""
    out = []
    for name, doc in _kuberay_docs():
        spec = doc.get("spec", {})
        for key in ("rayClusterConfig", "rayClusterSpec"):
            if key in spec:
                out.append((f"{name}:{key}", spec[key]))
        if doc["kind"] == "RayCluster":
            out.append((name, spec))
    return out


def _image() -> str:
    line = (CLUSTER / "IMAGE").read_text().splitlines()[0]
    return line.split("#", 1)[0].strip()


def _find_key(node, key, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield f"{path}/{k}", v
            yield from _find_key(v, key, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _find_key(v, key, f"{path}/{i}")


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def test_the_vendored_crds_are_all_there():
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml.gz")) == [f"ray.io_{p}.yaml.gz" for p in sorted(RAY_KINDS.values())]
    assert "cluster/kuberay/" in (CRD_DIR / "SOURCE.md").read_text()


def test_every_kuberay_manifest_validates_against_its_schema():
    docs = _kuberay_docs()
    kinds = {d["kind"] for _, d in docs}
    assert {"RayCluster", "RayJob", "RayService", "Secret"} <= kinds, kinds
    problems = [f"{name} ({doc['kind']} {doc.get('metadata', {}).get('name')}) {err}"
                for name, doc in docs for err in schema_errors(doc)]
    assert not problems, "\n".join(problems)


def test_names_and_operator_rules():
    """What the KubeRay operator checks beyond the schema (its validation.go), and the cluster-shape choices."""
    dns1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    clusters = {d["metadata"]["name"] for _, d in _by_kind("RayCluster")}
    for name, doc in _kuberay_docs():
        assert dns1035.match(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 47, (name, doc["metadata"])
    for name, job in _by_kind("RayJob"):
        spec = job["spec"]
        assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec), f"{name}: one of rayClusterSpec/clusterSelector"
        if "clusterSelector" in spec:
            assert spec["clusterSelector"].get("ray.io/cluster") in clusters, f"{name}: selects no RayCluster of cluster/kuberay"
            assert spec.get("submissionMode", "K8sJobMode") != "SidecarMode", name
            assert not spec.get("shutdownAfterJobFinishes"), f"{name}: would not shut a shared cluster down"
        else:
            assert spec.get("shutdownAfterJobFinishes") is True and spec.get("ttlSecondsAfterFinished", -1) >= 0, name
    for where, spec in _cluster_specs():
        assert spec["rayVersion"] == ray.__version__, where
        assert spec.get("enableInTreeAutoscaling") is True and "autoscalerOptions" in spec, where
        head = spec["headGroupSpec"]
        assert head["rayStartParams"].get("num-cpus") == "0", f"{where}: work would land on the head"
        assert head["rayStartParams"].get("dashboard-host") == "0.0.0.0", where
        groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
        assert {"gpu", "cpu"} <= set(groups), where
        gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert str(gpu_limits.get("nvidia.com/gpu")) == "1", where
        assert "nvidia.com/gpu" not in groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"], where
        for group_name, group in [("head", head), *groups.items()]:
            if group is not head:
                assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], (where, group_name)
            for c in group["template"]["spec"]["containers"]:
                assert c["resources"].get("requests") and c["resources"].get("limits"), (where, group_name, c["name"])


def test_every_ray_container_gets_the_secrets():
    secrets = {d["metadata"]["name"]: set(d["stringData"]) for _, d in _by_kind("Secret")}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= secrets["synthir-s3"]
    assert secrets["synthir-keys"] == {"OPENAI_API_KEY", "SYNTHIR_API_KEY"}
    for where, spec in _cluster_specs():
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for group in groups:
            for c in group["template"]["spec"]["containers"]:
                from_secret = {r["secretRef"]["name"] for r in c.get("envFrom", []) if "secretRef" in r}
                keys = {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"]): e["name"]
                        for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
                assert "synthir-s3" in from_secret, (where, c["name"])
                assert {k: v for (s, k), v in keys.items()} == {"OPENAI_API_KEY": "OPENAI_API_KEY",
                                                                "SYNTHIR_API_KEY": "SYNTHIR_API_KEY"}, (where, c["name"])
                for secret, key in keys:
                    assert key in secrets.get(secret, ()), f"{where}: {secret}/{key} is in no Secret of secrets.example.yaml"


# ---------------------------------------------------------------------------------------------------------------
# proof that the validation is real


def _raycluster() -> dict:
    (doc,) = [d for _, d in _by_kind("RayCluster")]
    return copy.deepcopy(doc)


def _assert_rejected(doc: dict, path: str, words: str):
    errors = schema_errors(doc)
    assert errors, "the broken manifest was accepted"
    hits = [e for e in errors if e.startswith(path + ":") and words in e]
    assert hits, f"no error at {path!r} mentioning {words!r}; got:\n" + "\n".join(errors)


def test_a_misspelled_field_is_rejected():
    doc = _raycluster()
    doc["spec"]["workerGroupSpec"] = doc["spec"].pop("workerGroupSpecs")
    _assert_rejected(doc, "spec", "'workerGroupSpec' was unexpected")
    doc = _raycluster()
    doc["spec"]["headGroupSpec"]["rayStartParam"] = doc["spec"]["headGroupSpec"].pop("rayStartParams")
    _assert_rejected(doc, "spec/headGroupSpec", "'rayStartParam' was unexpected")
    doc = _raycluster()  # deep inside the embedded Pod template too
    container = doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    container["resource"] = container.pop("resources")
    _assert_rejected(doc, "spec/workerGroupSpecs/0/template/spec/containers/0", "'resource' was unexpected")


def test_a_wrong_type_is_rejected():
    doc = _raycluster()
    doc["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    _assert_rejected(doc, "spec/workerGroupSpecs/0/replicas", "'two' is not of type 'integer'")
    doc = _raycluster()
    doc["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # rayStartParams are strings
    _assert_rejected(doc, "spec/headGroupSpec/rayStartParams/num-cpus", "is not of type 'string'")


def test_a_missing_required_field_is_rejected():
    doc = _raycluster()
    del doc["spec"]["workerGroupSpecs"][1]["groupName"]
    _assert_rejected(doc, "spec/workerGroupSpecs/1", "'groupName' is a required property")
    doc = _raycluster()
    del doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["name"]
    _assert_rejected(doc, "spec/headGroupSpec/template/spec/containers/0", "'name' is a required property")


def test_a_field_only_cel_rules_could_check_is_rejected():
    doc = _raycluster()
    doc["spec"]["managedBy"] = "ray.io/kuberay-operator"
    _assert_rejected(doc, "spec/managedBy", "should not be valid under {}")


def test_broken_rayjob_rayservice_and_secret_are_rejected():
    (_, job), *_ = _by_kind("RayJob")
    job = copy.deepcopy(job)
    job["spec"]["entryPoint"] = job["spec"].pop("entrypoint")
    _assert_rejected(job, "spec", "'entryPoint' was unexpected")
    ((_, svc),) = _by_kind("RayService")
    svc = copy.deepcopy(svc)
    del svc["spec"]["rayClusterConfig"]
    _assert_rejected(svc, "spec", "'rayClusterConfig' is a required property")
    (_, secret), *_ = _by_kind("Secret")
    secret = copy.deepcopy(secret)
    secret["stringdata"] = secret.pop("stringData")
    _assert_rejected(secret, "<root>", "'stringdata' was unexpected")
    with pytest.raises(AssertionError, match="no validator for kind 'Deployment'"):
        schema_errors({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}})


def test_broken_launcher_configs_are_rejected():
    good = yaml.safe_load(LAUNCHER.read_text())
    bad = copy.deepcopy(good) | {"max_workers": "many"}
    assert any(e.startswith("max_workers:") and "'many' is not of type 'integer'" in e for e in launcher_errors(bad))
    bad = copy.deepcopy(good) | {"max_worker": 4}
    assert any("'max_worker' was unexpected" in e for e in launcher_errors(bad))
    bad = copy.deepcopy(good)
    del bad["available_node_types"]["gpu-a10g"]["resources"]
    assert any(e.startswith("available_node_types/gpu-a10g:") and "'resources' is a required property" in e
               for e in launcher_errors(bad))
    bad = copy.deepcopy(good) | {"head_node_type": "no-such-type"}
    assert any("head_node_type" in e for e in launcher_errors(bad))


# ---------------------------------------------------------------------------------------------------------------
# the launcher, the image, the versions


def test_the_launcher_config_validates_against_rays_schema():
    config = yaml.safe_load(LAUNCHER.read_text())
    assert launcher_errors(config) == []
    assert config["provider"]["type"] == "aws"
    assert config["docker"]["image"] == _image() and config["docker"]["container_name"]
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "work would land on the head"
    assert any(t["resources"].get("GPU") for t in types.values()) and any(
        not t["resources"].get("GPU") and t["resources"].get("CPU") for n, t in types.items() if t is not head)
    assert "--num-cpus=0" in " ".join(config["head_start_ray_commands"])
    for remote, local in config["file_mounts"].items():
        path = ROOT / local
        if local == ".":
            continue  # the repository itself
        # a secrets file: not in git (cluster/.gitignore), made from its .example, kept out of images and uploads
        assert path.exists() or path.with_name(path.name + ".example").exists(), (remote, local)
        rel = path.relative_to(CLUSTER).as_posix()
        assert rel in (CLUSTER / ".gitignore").read_text(), rel
        assert local in (CLUSTER / "Dockerfile.dockerignore").read_text(), local
        assert any(local in e for e in yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())["excludes"])
        assert remote.lstrip("~/") in " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "." in config["file_mounts"].values()
    assert ".gitignore" in config["rsync_filter"]


def test_one_image_tag_everywhere_matching_package_and_ray_versions():
    image = _image()
    m = re.fullmatch(r"[\w./-]+/synthir:(?P<version>[^-]+)-ray(?P<ray>[\d.]+)-gpu", image)
    assert m, image
    assert m["version"] == _pyproject()["version"]
    assert m["ray"] == ray.__version__
    seen = []
    for path in sorted(CLUSTER.rglob("*.yaml")):
        if "schemas" in path.parts:
            continue
        for doc in _docs(path):
            for where, value in _find_key(doc, "image"):
                seen.append(where)
                assert value == image, f"{path.relative_to(ROOT)}{where}: {value} != cluster/IMAGE {image}"
            for where, value in _find_key(doc, "rayVersion"):
                assert value == ray.__version__, f"{path.relative_to(ROOT)}{where}"
    assert len(seen) >= 10, seen  # the RayCluster, RayService, ephemeral RayJob containers and the launcher


def test_the_dockerfile():
    text = (CLUSTER / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert base == f"rayproject/ray:{ray.__version__}-py311-gpu", base
    assert re.search(r"^COPY\s+(--chown=\S+\s+)?\.\s+/app$", text, re.M)
    install = re.search(r"pip install[^\n]*", text)[0]
    assert '"/app[gpu]"' in install and " -e " not in install and "--editable" not in install
    assert re.search(r"HF_HUB_OFFLINE=1", text) and "TOKENIZERS_PARALLELISM=false" in text
    assert f"ray.__version__ == '{ray.__version__}'" in text
    ignored = (CLUSTER / "Dockerfile.dockerignore").read_text().split()
    assert {".git/", ".venv/", "runs/", "bench/.venvs/"} <= set(ignored)
    assert not {"jobs", "configs", "serve", "platform", "jobs/", "configs/", "serve/", "platform/"} & set(ignored)


# ---------------------------------------------------------------------------------------------------------------
# what the RayJobs run


def _job_prefix(script: Path) -> list[str]:
    """The CLI words a jobs/<x>.py passes before its own arguments: app([...words..., *sys.argv[1:]])."""
    tree = ast.parse(script.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "app":
            (arg,) = node.args
            return [e.value for e in arg.elts if isinstance(e, ast.Constant)]
    raise AssertionError(f"{script}: no app([...]) call")


def _leaf_command(words: list[str]):
    import typer

    from synthir.cli import app

    cmd, rest = typer.main.get_command(app), list(words)
    while rest and hasattr(cmd, "commands") and rest[0] in cmd.commands:
        cmd = cmd.commands[rest.pop(0)]
    return cmd, rest


def _validate_job(argv: list[str]) -> None:
    """Parse a job's argv with the CLI's own parser, then validate its config as that command would."""
    from synthir.config import load_config

    assert argv[0] == "python" and argv[1].startswith(f"{APP_DIR}/jobs/"), argv
    script = ROOT / argv[1].removeprefix(APP_DIR + "/")
    assert script.is_file(), script
    words = _job_prefix(script)
    cmd, rest = _leaf_command(words)
    assert not rest, f"{script.name}: {words} is not a command of synthir.cli"
    params = cmd.make_context(cmd.name, words[len(words) - len(rest):] + argv[2:]).params  # unknown flag: raises
    config = params.get("config")
    if config:
        assert config.startswith(APP_DIR + "/configs/"), config
        config = str(ROOT / config.removeprefix(APP_DIR + "/"))
        assert Path(config).is_file(), config
    overrides = list(params.get("set_") or [])
    if words[:2] == ["run", "syntriever"]:
        from synthir.pipelines.syntriever import STEPS, SyntrieverConfig

        assert set(params["steps"].split(",")) <= set(STEPS), params["steps"]
        load_config(SyntrieverConfig, config, overrides)
    elif words == ["eval"]:
        from synthir.eval.run import EvalConfig

        for key, name in (("dataset", "dataset"), ("retriever", "retriever"), ("encoder.model", "model"),
                          ("split", "split"), ("storage", "storage_root")):
            if params.get(name) is not None:
                overrides.append(f"{key}={params[name]}")
        load_config(EvalConfig, config, overrides)
    elif words == ["index", "build"]:
        from synthir.serving.bundle import BuildConfig

        assert params["run"] and params["run"].startswith("s3://"), params["run"]
        overrides += [f"dataset={params['dataset']}"] if params.get("dataset") else []
        load_config(BuildConfig, config, overrides)
    elif words == ["synth", "corpus"]:
        from synthir.synth.corpus import CorpusSynthConfig

        load_config(CorpusSynthConfig, config, overrides)
    else:
        raise AssertionError(f"no config check for command {words}")


def test_rayjob_entrypoints_name_real_scripts_configs_and_flags():
    jobs = {d["metadata"]["name"]: d for _, d in _by_kind("RayJob")}
    assert {"synthir-syntriever", "synthir-synth-corpus", "synthir-eval", "synthir-index"} <= set(jobs)
    for name, job in jobs.items():
        entrypoint = job["spec"]["entrypoint"]
        # KubeRay splices the entrypoint into a shell command line (`ray job submit ... -- <entrypoint> ;`):
        # a shell operator would run in the submitter pod, not in the job.
        assert not re.search(r"[;&|<>`$()\\\n]", entrypoint), f"{name}: shell metacharacters in {entrypoint!r}"
        _validate_job(shlex.split(entrypoint))


def test_the_synth_corpus_config_exists_and_validates():
    from synthir.config import load_config
    from synthir.synth.corpus import CorpusSynthConfig

    path = ROOT / "configs" / "synth-corpus-gpu.yaml"
    assert isinstance(yaml.safe_load(path.read_text()), dict)
    load_config(CorpusSynthConfig, str(path))


# ---------------------------------------------------------------------------------------------------------------
# the runtime envs


def _runtime_env(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def _driver_runtime_env(monkeypatch, job_env: dict | None) -> dict:
    """The runtime_env synthir's own ray.init passes (synthir.runtime.init_ray) in a job submitted with ``job_env``."""
    import synthir.runtime as runtime

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    if job_env is None:
        monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    else:  # what Ray's job supervisor hands the entrypoint
        monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": job_env, "metadata": {}}))
    runtime.init_ray(runtime.RayConfig(address="auto"))
    return seen["runtime_env"]


def _merge_like_ray(job_env: dict, driver_env: dict):
    """How ray.init merges a submitted job's runtime env with the driver's own (ray._private.worker), no override."""
    from ray.runtime_env.runtime_env import _merge_runtime_env

    return _merge_runtime_env(job_env, driver_env, override=False)


def test_runtime_envs_construct_and_merge_with_synthirs_ray_init(monkeypatch):
    from ray.runtime_env import RuntimeEnv

    base = _runtime_env("runtime_env.yaml")
    envs = {"runtime_env.yaml": base, "runtime_env-pip.yaml": _runtime_env("runtime_env-pip.yaml")}
    envs |= {f"{n}:runtimeEnvYAML": yaml.safe_load(d["spec"]["runtimeEnvYAML"]) for n, d in _by_kind("RayJob")}
    monkeypatch.chdir(ROOT)
    for name, env in envs.items():
        RuntimeEnv(**env)
        assert env["env_vars"] == base["env_vars"], name
        driver = _driver_runtime_env(monkeypatch, env)
        assert "PYTHONPATH" not in driver["env_vars"], name  # the job's py_modules / image decide imports
        merged = _merge_like_ray(env, driver)
        assert merged is not None, f"{name}: ray.init in the job's driver would fail (conflicting env_vars)"
        assert merged["env_vars"]["HF_HUB_OFFLINE"] == "1" and merged["env_vars"]["AWS_REGION"] == "us-west-2"
        assert merged.get("py_modules") == env.get("py_modules")
    # outside a job, the same ray.init repeats the keys (and sets PYTHONPATH): Ray would refuse that as a job's driver
    outside = _driver_runtime_env(monkeypatch, None)
    assert "PYTHONPATH" in outside["env_vars"] and _merge_like_ray(base, outside) is None
    # RayJobs run the image's code: nothing local to upload from the submitter pod
    for name, env in envs.items():
        if name.endswith(":runtimeEnvYAML"):
            assert "py_modules" not in env and "://" in env.get("working_dir", "://"), name


def test_the_pip_runtime_env_is_the_package_dependencies_plus_gpu_extra():
    project = _pyproject()
    pip_env = _runtime_env("runtime_env-pip.yaml")
    pip = pip_env.pop("pip")
    packages = pip["packages"] if isinstance(pip, dict) else pip
    assert packages == project["dependencies"] + project["optional-dependencies"]["gpu"]
    assert pip_env == _runtime_env("runtime_env.yaml")


def test_the_upload_keeps_the_code_and_data_and_drops_the_heavy_folders(tmp_path):
    """Zip working_dir and py_modules exactly as `ray job submit` does (Ray's packaging code, .gitignore included)."""
    from ray._private.runtime_env.packaging import _get_excludes, _zip_files

    env = _runtime_env("runtime_env.yaml")
    excludes = env["excludes"]
    matches = _get_excludes(ROOT, excludes)
    for heavy in (".venv", ".git", "runs", "bench/.venvs", "bench/results"):
        if (ROOT / heavy).exists():  # the excludes alone (without .gitignore) drop everything inside it
            assert all(matches(p) for p in list((ROOT / heavy).iterdir())[:20]), heavy
    assert matches(ROOT / "cluster" / "launcher" / "secrets.env")
    assert not matches(ROOT / "platform" / "synthir" / "_data" / "scifact" / "corpus.jsonl.gz")

    work = tmp_path / "working_dir.zip"
    _zip_files(str(ROOT), excludes, str(work), include_gitignore=True)
    names = set(zipfile.ZipFile(work).namelist())
    assert {"jobs/syntriever.py", "configs/syntriever-scifact-e5-paper.yaml", "serve/dense-gpu.yaml",
            "cluster/runtime_env.yaml"} <= names
    assert not [n for n in names if n.split("/")[0] in {".venv", ".git", "runs"} or n.startswith(("bench/.venvs/", "bench/results/"))]
    assert work.stat().st_size < 64 << 20, work.stat().st_size

    (module,) = env["py_modules"]
    mod = tmp_path / "py_module.zip"
    _zip_files(str(ROOT / module), excludes, str(mod), include_gitignore=True, include_parent_dir=True)
    names = set(zipfile.ZipFile(mod).namelist())
    assert {"synthir/__init__.py", "synthir/_data/scifact/corpus.jsonl.gz"} <= names, sorted(names)[:10]
    assert not [n for n in names if "__pycache__" in n]


# ---------------------------------------------------------------------------------------------------------------
# the service


def test_the_rayservice_serves_serve_dense_gpu_yaml(monkeypatch):
    ((_, svc),) = _by_kind("RayService")
    served = yaml.safe_load(svc["spec"]["serveConfigV2"])
    reference = yaml.safe_load((ROOT / "serve" / "dense-gpu.yaml").read_text())
    assert served == reference, "cluster/kuberay/rayservice.yaml's serveConfigV2 drifted from serve/dense-gpu.yaml"
    (application,) = served["applications"]
    module, attr = application["import_path"].split(":")
    build_app = getattr(importlib.import_module(module), attr)
    assert callable(build_app)

    from synthir.config import validate
    from synthir.serving.config import ServeConfig

    runs = {d["name"]: d["user_config"]["run"] for d in application["deployments"]}
    assert set(runs) == {"DenseEncoder", "DenseSearcher"} and len(set(runs.values())) == 1, runs
    validate(ServeConfig, {**application["args"], "run": next(iter(runs.values()))}, "<rayservice args>")
    monkeypatch.setenv("SYNTHIR_API_KEY", "test-key")  # in the pods: from the synthir-keys Secret
    app = build_app(copy.deepcopy(application["args"]))  # binds the deployments (no Ray needed)
    assert type(app).__name__ == "Application"
    # the worker groups can hold the replicas: GPUs for the encoder, CPUs for searcher and ingress
    groups = {g["groupName"]: g for g in svc["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    gpu_pod = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    cpu_pod = groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert float(gpu_pod["cpu"]) >= application["args"]["encoder"]["num_cpus"]
    assert float(cpu_pod["cpu"]) >= application["args"]["searcher"]["num_cpus"] + application["args"]["ingress"]["num_cpus"]
    assert groups["gpu"]["maxReplicas"] >= application["args"]["encoder"]["autoscaling"]["max_replicas"]


# ---------------------------------------------------------------------------------------------------------------
# the README


def test_the_readme_names_only_files_that_exist():
    text = (CLUSTER / "README.md").read_text()
    paths = set(re.findall(r"(?<![\w/.-])((?:cluster|jobs|configs|serve)/[\w./-]*\w)", text))
    missing = [p for p in sorted(paths) if not (ROOT / p).exists() and p != "cluster/launcher/secrets.env"]
    assert not missing, missing
    for name in [p.name for p in KUBERAY.glob("*.yaml")] + ["aws-gpu.yaml", "runtime_env.yaml", "Dockerfile", "IMAGE"]:
        assert name in text, name
    assert "# CHANGE" in text
