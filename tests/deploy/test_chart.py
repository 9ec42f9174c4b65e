"""The Helm chart in deploy/k8s: linted, rendered, validated against Kubernetes' own schemas, its
wiring checked, and its pods' rendered commands run as local processes against the test broker.

Helm comes from the project's installer (`deploy.k8s.tools.helm()`, built once into
$PAYSTREAM_HOME); the schemas from the `kubernetes-validate` package (strict: unknown fields
are errors). No cluster is needed.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from deploy.k8s import tools
from paystream import settings as settings_module
from paystream.settings import Settings

Manifest = dict[str, Any]

# the first test that asks for helm may build it (about 7.5 minutes measured on 2 busy cores)
pytestmark = pytest.mark.timeout(1800)

CHART = tools.CHART
RELEASE = "pay"
NAMESPACE = "payments-prod"
# validated against these versions' schemas (kubernetes-validate ships them): the oldest the
# Kubernetes project still supports and the one Helm v3.22's client-go speaks
KUBERNETES = ("1.33.0", "1.37.0")


@pytest.fixture(scope="session")
def helm() -> Path:
    """The project's helm; the first call in a fresh $PAYSTREAM_HOME builds it (minutes)."""
    return tools.helm()


def render(helm: Path, tmp_path: Path, values: dict[str, Any] | None = None,
           extra: list[str] | None = None) -> list[Manifest]:
    """`helm template` the chart with `values` (a values file) and return its manifests."""
    command = [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if values:
        values_file = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.json"
        values_file.write_text(json.dumps(values))  # JSON is YAML
        command += ["--values", str(values_file)]
    result = subprocess.run(command + (extra or []), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def refused(helm: Path, tmp_path: Path, values: dict[str, Any]) -> str:
    """`helm template` with `values`, which must fail; its error output."""
    values_file = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.json"
    values_file.write_text(json.dumps(values))
    result = subprocess.run([str(helm), "template", RELEASE, str(CHART), "--values", str(values_file)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, f"helm template accepted {values}"
    return result.stderr


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The single manifest of `kind` (and `name`), not a hook copy."""
    found = [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
             and "helm.sh/hook" not in m["metadata"].get("annotations", {})]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[m['metadata']['name'] for m in found]}"
    return found[0]


def worker(manifests: list[Manifest]) -> dict[str, Any]:
    return one(manifests, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]


def validate(manifests: list[Manifest]) -> None:
    """Every manifest against the Kubernetes schemas, unknown fields included."""
    import kubernetes_validate

    for version in KUBERNETES:
        for manifest in manifests:
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                raise AssertionError(
                    f"Kubernetes {version}: {manifest['kind']} {manifest['metadata']['name']}: {error}") from error


def config_map_data(manifests: list[Manifest], name: str) -> dict[str, str]:
    return dict(one(manifests, "ConfigMap", name).get("data") or {})


def secret_data(manifests: list[Manifest], name: str) -> dict[str, str]:
    data = one(manifests, "Secret", name).get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def pod_environment(manifests: list[Manifest], ordinal: int) -> dict[str, str]:
    """The environment Kubernetes would give pod `ordinal`: envFrom first, then env (which wins),
    with the downward API's metadata.name resolved to the pod's name."""
    statefulset = one(manifests, "StatefulSet")
    container = worker(manifests)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_map_data(manifests, source["configMapRef"]["name"]))
        else:
            env.update(secret_data(manifests, source["secretRef"]["name"]))
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            assert variable["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, variable
            env[variable["name"]] = f"{statefulset['metadata']['name']}-{ordinal}"
    return env


def argument(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def values_for(settings: Settings, replicas: int) -> dict[str, Any]:
    """Chart values that point the pods at `settings`' Kafka, topics and app id."""
    tree = msgspec.to_builtins(settings)
    for field in ("snapshot_dir", "http_host", "http_port", "http_peers"):  # the chart sets them
        del tree["engine"][field]
    return {"replicas": replicas, "config": tree}


# ---------------------------------------------------------------------------------------------
# lint, render, validate


def test_helm_lint_is_clean(helm: Path) -> None:
    for replicas in ("1", "3"):
        result = subprocess.run([str(helm), "lint", "--strict", str(CHART), "--set", f"replicas={replicas}"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", [
    None,
    {"replicas": 3},
    {"replicas": 3, "kafkaCredentials": {"values": {"sasl.username": "paystream", "sasl.password": "s3cret"}},
     "config": {"kafka": {"client": {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}}},
     "persistence": {"storageClass": "fast-ssd"}, "topicsJob": {"brokers": 3}},
    {"replicas": 1, "kafkaCredentials": {"existingSecret": "kafka-users"}, "topicsJob": {"enabled": False},
     "podDisruptionBudget": {"enabled": False}},
], ids=["defaults", "3-replicas", "sasl", "existing-secret"])
def test_every_rendered_manifest_matches_the_kubernetes_schemas(helm: Path, tmp_path: Path,
                                                                values: dict[str, Any] | None) -> None:
    manifests = render(helm, tmp_path, values)
    kinds = sorted(m["kind"] for m in manifests)
    assert {"StatefulSet", "Service", "ConfigMap"} <= set(kinds)
    validate(manifests)


def test_schema_validation_rejects_an_unknown_field(helm: Path, tmp_path: Path) -> None:
    """The validation above can fail: a misspelt field in a rendered manifest is an error."""
    import kubernetes_validate

    statefulset = one(render(helm, tmp_path), "StatefulSet")
    statefulset["spec"]["podManagmentPolicy"] = "Parallel"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES[-1], strict=True)


def test_an_epoch_that_is_not_whole_seconds_is_refused(helm: Path) -> None:
    result = subprocess.run([str(helm), "template", RELEASE, str(CHART),
                             "--set", "config.engine.epoch_interval_ms=500"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "whole seconds" in result.stderr


# ---------------------------------------------------------------------------------------------
# values.schema.json: Helm checks the values against it before rendering (install, upgrade,
# template, lint); the messages below are those of the pinned Helm's JSON Schema validator


@pytest.mark.parametrize(("values", "messages"), [
    ({"replicas": -1}, ["at '/replicas'", "minimum: got -1, want 1"]),
    ({"replicas": 2.5}, ["at '/replicas'", "want integer"]),
    ({"metrics": {"port": "abc"}}, ["at '/metrics/port'", "got string, want integer"]),
    ({"metrics": {"port": 70000}}, ["at '/metrics/port'", "maximum: got 70,000, want 65,535"]),
    ({"replica": 3}, ["additional properties 'replica' not allowed"]),
    ({"config": {"engine": {"store": "ssd"}}}, ["at '/config/engine/store'", "'memory', 'disk'"]),
    ({"config": {"log_format": "xml"}}, ["at '/config/log_format'", "'json', 'console', 'auto'"]),
    ({"config": {"engine": {"http_port": 9400}}}, ["at '/config/engine'", "'http_port' not allowed"]),
    ({"config": {"topics": {"payments": "pay ments"}}}, ["at '/config/topics/payments'", "'pay ments'"]),
    ({"probes": {"readiness": {"path": "/metrics"}}}, ["at '/probes/readiness/path'", "'/health/ready'"]),
    ({"persistence": {"size": "lots"}}, ["at '/persistence/size'", "'lots' does not match"]),
    ({"topicsJob": {"enabled": "yes"}}, ["at '/topicsJob/enabled'", "got string, want boolean"]),
], ids=["negative-replicas", "fractional-replicas", "port-not-a-number", "port-too-high", "unknown-key",
        "unknown-store", "unknown-log-format", "port-under-config", "bad-topic-name", "unknown-probe-path",
        "bad-quantity", "not-a-boolean"])
def test_the_values_schema_refuses_a_bad_value_naming_it(helm: Path, tmp_path: Path, values: dict[str, Any],
                                                          messages: list[str]) -> None:
    error = refused(helm, tmp_path, values)
    assert "values don't meet the specifications of the schema" in error
    for message in messages:
        assert message in error, error


def test_the_values_schema_accepts_the_defaults_and_every_documented_form(helm: Path, tmp_path: Path) -> None:
    """values.yaml itself, and values of every form values.yaml documents, pass the schema and render."""
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load((CHART / "values.yaml").read_text()))
    manifests = render(helm, tmp_path, {
        "global": {"imageRegistry": "registry.example"},  # what a parent chart passes down
        "config": {"engine": {"store": "disk"}, "log_format": "console", "log_level": "debug",
                   "kafka": {"client": {"enable.idempotence": True, "linger.ms": 5}}},
        "kafkaCredentials": {"values": {"sasl.username": "paystream", "sasl.password": 12345}},
        "resources": {"requests": {"cpu": 1, "memory": "1Gi"}, "limits": {"cpu": "1500m"}},
        "podDisruptionBudget": {"maxUnavailable": "50%"},
        "probes": {"readiness": {"path": "/health/live"}},
        "image": {"pullSecrets": [{"name": "regcred"}]},
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    })
    validate(manifests)
    assert worker(manifests)["readinessProbe"]["httpGet"]["path"] == "/health/live"
    assert pod_environment(manifests, 0)["PAYSTREAM_KAFKA__CLIENT__sasl.password"] == "12345"


def _resolved(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].removeprefix("#/definitions/")]
    return node


def test_the_values_schema_knows_every_setting_and_no_other() -> None:
    """The schema's `config` is settings.py's tree, field for field (but the fields the chart sets),
    with each field's type; settings.py's defaults pass it."""
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    set_by_chart = {("engine", "snapshot_dir"), ("engine", "http_host"), ("engine", "http_port"),
                    ("engine", "http_peers")}
    json_types = {bool: "boolean", int: "integer", str: "string", dict: "object"}

    def compare(struct: type[msgspec.Struct], node: dict[str, Any], path: tuple[str, ...]) -> None:
        node = _resolved(schema, node)
        assert node["additionalProperties"] is False, path
        fields = {f.name: f.type for f in msgspec.structs.fields(struct) if (*path, f.name) not in set_by_chart}
        assert set(node["properties"]) == set(fields), path
        for name, kind in fields.items():
            child = _resolved(schema, node["properties"][name])
            if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
                compare(kind, child, (*path, name))
            elif "enum" in child:
                assert all(isinstance(value, kind) for value in child["enum"]), (*path, name)
            else:
                assert child["type"] == json_types[getattr(kind, "__origin__", kind)], (*path, name)

    config = schema["properties"]["config"]
    compare(Settings, config, ())
    defaults = msgspec.to_builtins(Settings())
    for _section, field in set_by_chart:
        del defaults["engine"][field]
    jsonschema.Draft7Validator(schema).validate({**yaml.safe_load((CHART / "values.yaml").read_text()),
                                                 "config": defaults})
    # the enums are the values settings.py accepts
    with pytest.raises(settings_module.SettingsError, match="engine.store"):
        settings_module.load(environ={}, engine={"store": "ssd"})
    assert set(_resolved(schema, config["properties"]["engine"])["properties"]["store"]["enum"]) == {"memory", "disk"}


# ---------------------------------------------------------------------------------------------
# wiring


@pytest.mark.parametrize("replicas", [1, 2, 3, 5])
def test_workers_find_each_other_through_the_headless_service(helm: Path, tmp_path: Path, replicas: int) -> None:
    manifests = render(helm, tmp_path, {"replicas": replicas})
    statefulset = one(manifests, "StatefulSet")
    name = statefulset["metadata"]["name"]
    service = one(manifests, "Service", statefulset["spec"]["serviceName"])
    assert statefulset["spec"]["replicas"] == replicas
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    container = worker(manifests)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports
    addresses = argument(container["args"], "-a").split(";")
    domain = f"{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
    assert addresses == [f"{name}-{i}.{domain}:{ports['bytewax']}" for i in range(replicas)]


def test_the_process_id_is_the_pod_ordinal(helm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytewax's own argument parser, given a pod's rendered command and environment."""
    from bytewax import run

    manifests = render(helm, tmp_path, {"replicas": 3, "workersPerProcess": 2})
    container = worker(manifests)
    assert container["command"] == ["python", "-m", "bytewax.run"]
    assert "-i" not in container["args"]
    for ordinal in range(3):
        env = pod_environment(manifests, ordinal)
        for key in [k for k in os.environ if k.startswith("BYTEWAX_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if key.startswith("BYTEWAX_"):
                monkeypatch.setenv(key, value)
        monkeypatch.setattr(sys, "argv", ["bytewax.run", *container["args"]])
        parsed = run._parse_args()
        assert parsed.process_id == ordinal
        assert parsed.import_str == "flows.payments:flow"
        assert parsed.workers_per_process == 2
        assert parsed.snapshot_interval.total_seconds() == 1
        assert len(parsed.addresses.split(";")) == 3


def test_the_config_map_is_what_paystream_settings_load(helm: Path, tmp_path: Path) -> None:
    """Every ConfigMap and Secret key is a name settings.load() accepts, and every value arrives."""
    values = {
        "config": {
            "kafka": {"bootstrap_servers": "kafka-0.kafka:9093,kafka-1.kafka:9093", "partitions": 24,
                      "client": {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}},
            "topics": {"payments": "eu-payments", "dlq": "eu-payments-dlq"},
            "engine": {"app_id": "paystream-eu", "epoch_interval_ms": 2000, "max_batch": 777},
            "rules": {"velocity": {"max_authorizations": 9, "window_ms": 120000},
                      "impossible_travel": {"enabled": False}, "duplicate": {"horizon_ms": 1209600000}},
            "log_level": "warning",
        },
        "kafkaCredentials": {"values": {"sasl.username": "eu-engine", "sasl.password": "p@ss=word;"}},
        "persistence": {"mountPath": "/data"},
        "metrics": {"port": 9400},
    }
    manifests = render(helm, tmp_path, values)
    environment = pod_environment(manifests, 0)
    loaded = settings_module.load(environ=environment)
    expected = settings_module.load(environ={}, **values["config"], log_format="json")  # the chart's default
    expected = msgspec.structs.replace(expected,
                                       engine=msgspec.structs.replace(expected.engine, snapshot_dir="/data/snapshots",
                                                                      http_host="0.0.0.0", http_port=9400,
                                                                      http_peers=loaded.engine.http_peers),
                                       kafka=msgspec.structs.replace(expected.kafka, client={
                                           **expected.kafka.client, "sasl.username": "eu-engine",
                                           "sasl.password": "p@ss=word;"}))
    assert loaded == expected
    # interactive queries are forwarded to the pod that owns the key: every pod's engine address
    peers = loaded.engine.http_peers.split(",")
    assert len(peers) == 2 and all(peer.endswith(":9400") for peer in peers)  # the default 2 replicas
    assert all(peer.split(".")[0].endswith(f"-{ordinal}") for ordinal, peer in enumerate(peers))
    assert loaded.rules.duplicate.horizon_ms == 1_209_600_000  # not 1.2096e+09
    assert argument(worker(manifests)["args"], "-s") == "2"
    # the snapshot cache is on the claim's volume
    container = worker(manifests)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = one(manifests, "StatefulSet")["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    assert loaded.engine.snapshot_dir.startswith(mounts["data"] + "/")


def test_the_chart_defaults_are_paystreams_defaults(helm: Path, tmp_path: Path) -> None:
    """values.yaml repeats settings.py's defaults; only where the pods differ on purpose may it differ."""
    loaded = settings_module.load(environ=pod_environment(render(helm, tmp_path), 0))
    defaults = Settings()
    assert loaded.rules == defaults.rules
    assert loaded.topics == defaults.topics
    # a pod listens on its own IP (probes, Prometheus), not only on loopback
    assert loaded.engine.http_host == "0.0.0.0"
    assert msgspec.structs.replace(loaded.engine, snapshot_dir=defaults.engine.snapshot_dir,
                                   http_host=defaults.engine.http_host, http_peers="") == defaults.engine
    assert loaded.kafka.partitions == defaults.kafka.partitions
    assert loaded.kafka.bootstrap_servers == "kafka:9092" and loaded.log_format == "json"


def test_a_setting_paystream_does_not_know_is_refused(helm: Path, tmp_path: Path) -> None:
    """By the chart's schema first; with the schema skipped, by the pods themselves."""
    values = {"config": {"rules": {"velocity": {"max_authorisations": 3}}}}
    assert "additional properties 'max_authorisations' not allowed" in refused(helm, tmp_path, values)
    manifests = render(helm, tmp_path, values, extra=["--skip-schema-validation"])
    with pytest.raises(settings_module.SettingsError, match="max_authorisations"):
        settings_module.load(environ=pod_environment(manifests, 0))


def test_the_chart_sets_the_engines_address_itself(helm: Path, tmp_path: Path) -> None:
    """With the schema skipped, the templates still refuse the settings the chart owns, saying what to set."""
    for field in ("snapshot_dir", "http_host", "http_port", "http_peers"):
        command = [str(helm), "template", RELEASE, str(CHART), "--skip-schema-validation",
                   "--set", f"config.engine.{field}=1"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode != 0 and f"config.engine.{field}" in result.stderr, result.stderr


def test_probes_pdb_resources_and_security(helm: Path, tmp_path: Path) -> None:
    manifests = render(helm, tmp_path, {"replicas": 3})
    statefulset = one(manifests, "StatefulSet")
    pod = statefulset["spec"]["template"]["spec"]
    container = worker(manifests)
    env = pod_environment(manifests, 0)
    metrics_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
    # the engine's own server (connectors/health.py) on every interface; Bytewax's API server is off
    assert env["PAYSTREAM_ENGINE__HTTP_HOST"] == "0.0.0.0"
    assert int(env["PAYSTREAM_ENGINE__HTTP_PORT"]) == metrics_port == Settings().engine.http_port
    assert not [name for name in env if name.startswith("BYTEWAX_DATAFLOW_API")]
    # liveness restarts the container, so it asks only whether the dataflow loop runs; readiness
    # (tasks open and committing) restarts nothing
    assert container["startupProbe"]["httpGet"] == {"path": "/health/live", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "metrics"}
    # a pod is Ready only in a formed cluster: outdated pods are replaced all at once, not one by one
    assert statefulset["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                                     "rollingUpdate": {"maxUnavailable": "100%"}}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]

    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert (pdb["spec"]["selector"]["matchLabels"].items()
            <= statefulset["spec"]["template"]["metadata"]["labels"].items())

    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # the only writable paths: the claim and an emptyDir at /tmp, where HOME points
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert {v["name"] for v in pod["volumes"] if "emptyDir" in v} == {mounts["/tmp"]}
    assert env["HOME"] == "/tmp"

    annotations = statefulset["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_a_changed_setting_restarts_the_pods(helm: Path, tmp_path: Path) -> None:
    """The pod template carries a checksum of the ConfigMap and the Secret."""
    def annotations(values: dict[str, Any]) -> dict[str, str]:
        return one(render(helm, tmp_path, values), "StatefulSet")["spec"]["template"]["metadata"]["annotations"]

    base = annotations({})
    assert (annotations({"config": {"rules": {"velocity": {"max_authorizations": 6}}}})["checksum/config"]
            != base["checksum/config"])
    assert (annotations({"kafkaCredentials": {"values": {"sasl.password": "x"}}})["checksum/credentials"]
            != base["checksum/credentials"])


def test_the_topics_job_is_a_hook_with_the_same_settings(helm: Path, tmp_path: Path) -> None:
    manifests = render(helm, tmp_path, {"kafkaCredentials": {"values": {"sasl.password": "x"}},
                                        "topicsJob": {"brokers": 3}})
    hooks = [m for m in manifests if "helm.sh/hook" in m["metadata"].get("annotations", {})]
    assert sorted(m["kind"] for m in hooks) == ["ConfigMap", "Job", "Secret"]
    job = next(m for m in hooks if m["kind"] == "Job")
    weights = {m["kind"]: int(m["metadata"]["annotations"]["helm.sh/hook-weight"]) for m in hooks}
    assert weights["ConfigMap"] < weights["Job"] and weights["Secret"] < weights["Job"]  # copies exist first
    assert all(m["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade" for m in hooks)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert [container["command"][0], *container["args"]] == ["paystream", "topics", "create", "--brokers", "3"]
    hook_config = next(m for m in hooks if m["kind"] == "ConfigMap")
    assert hook_config["data"] == config_map_data(manifests,
                                                  f"{one(manifests, 'StatefulSet')['metadata']['name']}-config")
    hook_secret = next(m for m in hooks if m["kind"] == "Secret")
    assert hook_secret["data"] == one(manifests, "Secret")["data"]
    assert {ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container["envFrom"]} == \
        {hook_config["metadata"]["name"], hook_secret["metadata"]["name"]}


def test_the_dockerfile_builds_the_image_the_chart_expects(helm: Path, tmp_path: Path) -> None:
    """No Docker engine here: the Dockerfile is read, not built (see deploy/k8s/README.md)."""
    lines = [line.strip() for line in (CHART / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    # the base image is one ARG, pinned by digest (tests/deploy/test_supply_chain.py checks the pin)
    assert [line for line in lines if line.startswith("FROM")][-1] == "FROM ${PYTHON_IMAGE}"
    assert any(line.startswith("ARG PYTHON_IMAGE=python:3.11") for line in lines)
    user = next(line for line in reversed(lines) if line.startswith("USER")).split()[1]
    pod_security = one(render(helm, tmp_path), "StatefulSet")["spec"]["template"]["spec"]["securityContext"]
    assert user == f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}"
    assert any("pip wheel" in line and line.endswith(" .") for line in lines)  # the project, from pyproject.toml
    assert 'ENTRYPOINT ["python", "-m", "bytewax.run"]' in lines


# ---------------------------------------------------------------------------------------------
# the pods, run as local processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pods:
    """The rendered StatefulSet's pods as local processes (the shape wait_until_caught_up watches)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def alive(self) -> list[bool]:
        return [p.poll() is None for p in self.procs]

    def returncodes(self) -> list[int | None]:
        return [p.poll() for p in self.procs]

    def stop(self, timeout: float = 20.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def clusters() -> Iterator[list[Pods]]:
    """Every local cluster a test starts; all stopped when it ends."""
    started: list[Pods] = []
    yield started
    for pods in started:
        pods.stop()


def local_pod(manifests: list[Manifest], ordinal: int, local_addresses: list[str], metrics_port: int,
              root: Path) -> tuple[list[str], dict[str, str]]:
    """Pod `ordinal`'s command and environment with the cluster's names swapped for this machine's:
    pod DNS names -> 127.0.0.1:<free port>, the metrics port -> a free port on 127.0.0.1 (all pods
    share one host here), /tmp and the claim's mount -> directories under `root`, `python` -> this Python."""
    container = worker(manifests)
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data")
    data, tmp = root / f"pod-{ordinal}" / "data", root / f"pod-{ordinal}" / "tmp"
    data.mkdir(parents=True, exist_ok=True)  # a pod keeps its claim across restarts
    tmp.mkdir(parents=True, exist_ok=True)
    args = list(container["args"])
    args[args.index("-a") + 1] = ";".join(local_addresses)
    command = [sys.executable, *container["command"][1:], *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYSTREAM_", "BYTEWAX_"))}
    for name, value in pod_environment(manifests, ordinal).items():
        if value == "/tmp":
            value = str(tmp)
        elif value.startswith(mount + "/"):
            value = str(data) + value[len(mount):]
        env[name] = value
    env["PAYSTREAM_ENGINE__HTTP_HOST"] = "127.0.0.1"
    env["PAYSTREAM_ENGINE__HTTP_PORT"] = str(metrics_port)
    return command, env


def opened_tasks(log: Path) -> set[str]:
    """The engine tasks a pod opened, from its JSON log lines."""
    tasks = set()
    for line in log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "task open":
            tasks.add(str(event["task"]))
    return tasks


def http_ok(port: int, path: str) -> bytes | None:
    """The body of a 200 answer to GET `path`, or None (no answer yet, or 503 and such)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.read() if response.status == 200 else None
    except OSError:  # HTTPError (503) included
        return None


def launch(manifests: list[Manifest], settings: Settings, root: Path, workdir: Path, run: str) -> Pods:
    """Start every pod of the rendered StatefulSet as a local process; return once each is ready by
    its readiness probe (its tasks open) and serves its metrics (logs in root/<run>-pod-<i>.log)."""
    replicas = one(manifests, "StatefulSet")["spec"]["replicas"]
    addresses = [f"127.0.0.1:{_free_port()}" for _ in range(replicas)]
    metrics_ports = [_free_port() for _ in range(replicas)]
    pods = Pods()
    for ordinal in range(replicas):
        command, env = local_pod(manifests, ordinal, addresses, metrics_ports[ordinal], root)
        expected = msgspec.structs.replace(settings, engine=msgspec.structs.replace(
            settings.engine, snapshot_dir=str(root / f"pod-{ordinal}" / "data" / "snapshots"),
            http_host="127.0.0.1", http_port=metrics_ports[ordinal], http_peers=env["PAYSTREAM_ENGINE__HTTP_PEERS"]))
        assert settings_module.load(environ=env) == expected  # the ConfigMap carried every setting
        with open(root / f"{run}-pod-{ordinal}.log", "wb") as log:
            pods.procs.append(subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True))
    # what the readiness probe asks, on each pod's own metrics port
    probe_path = worker(manifests)["readinessProbe"]["httpGet"]["path"]
    deadline = time.monotonic() + 120
    while not all(http_ok(port, probe_path) is not None for port in metrics_ports):
        assert all(pods.alive()), f"a pod exited: {pods.returncodes()}; see {root}/{run}-pod-*.log"
        assert time.monotonic() < deadline, "a pod never became ready"
        time.sleep(0.5)
    for port in metrics_ports:
        assert b"paystream_tasks" in (http_ok(port, "/metrics") or b""), f"no engine metrics on port {port}"
    return pods


def shared_tasks(root: Path, run: str, replicas: int, tasks: int) -> list[set[str]]:
    """The tasks each pod of `run` opened; asserts they form one cluster: every pod has some,
    no task is opened twice, and all `tasks` are covered."""
    opened = [opened_tasks(root / f"{run}-pod-{ordinal}.log") for ordinal in range(replicas)]
    assert all(opened), opened
    assert sum(len(t) for t in opened) == len(set().union(*opened)) == tasks, opened
    return opened


def audit_passes(settings: Settings) -> None:
    from verify.audit import audit
    from verify.geo import distance_km
    from verify.readback import read_snapshot

    result = audit(read_snapshot(settings), settings.rules, distance_km)
    assert result.ok, result


@pytest.mark.timeout(900)
def test_the_rendered_pods_run_the_flow_exactly_once(helm: Path, make_settings: Any, tmp_path: Path,
                                                     clusters: list[Pods]) -> None:
    """Two "pods" started from the rendered StatefulSet process generated traffic on the real broker;
    the audit of every output topic passes. The topics Job's command runs first, as the hook would."""
    from tools.cli.generate import produce_traffic
    from tools.runner import wait_until_caught_up

    settings = make_settings(partitions=4)
    manifests = render(helm, tmp_path, values_for(settings, replicas=2))
    validate(manifests)
    workdir = tmp_path / "workdir"  # like the image: an empty working directory
    workdir.mkdir()

    # the pre-install hook: `paystream topics create` with the hook ConfigMap's environment
    job = next(m for m in manifests if m["kind"] == "Job")
    job_container = job["spec"]["template"]["spec"]["containers"][0]
    job_env = {k: v for k, v in os.environ.items() if not k.startswith("PAYSTREAM_")}
    hook_config = next(m for m in manifests if m["kind"] == "ConfigMap"
                       and m["metadata"]["name"] == job_container["envFrom"][0]["configMapRef"]["name"])
    job_env.update(hook_config["data"])
    paystream_cli = Path(sys.executable).with_name("paystream")
    created = subprocess.run([str(paystream_cli), *job_container["args"]], env=job_env, cwd=workdir,
                             capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    assert settings.topics.payments in created.stdout

    summary = produce_traffic(settings, accounts=300, payments=3_000, seed=11, bad_ratio=0.02, progress=False)
    assert not summary.delivery_errors

    pods = launch(manifests, settings, tmp_path, workdir, "run")
    clusters.append(pods)
    wait_until_caught_up(settings, summary.records["payments"], timeout=600, procs=pods, progress=False)  # type: ignore[arg-type]
    pods.stop()

    shared_tasks(tmp_path, "run", replicas=2, tasks=4)  # one Bytewax cluster, not two single ones
    # as on a read-only root file system: nothing written outside /tmp and the volume
    assert not list(workdir.iterdir())
    audit_passes(settings)


@pytest.mark.timeout(900)
def test_a_rescale_from_two_to_three_pods_mid_stream_stays_exactly_once(helm: Path, make_settings: Any, tmp_path: Path,
                                                                        clusters: list[Pods]) -> None:
    """`helm upgrade --set replicas=3` while payments flow: the two pods are stopped (SIGTERM, as the
    StatefulSet does) part-way, three pods from the new rendering take over (pods 0 and 1 keep their
    volumes), the tasks move, and the audit still passes."""
    from tools.cli.generate import produce_traffic
    from tools.runner import LagProbe, wait_until_caught_up

    # small batches, so that a task's work spans several epochs (transactions) and the rescale
    # lands while some of it is committed and some is not
    settings = make_settings(partitions=4, engine={"max_batch": 100, "max_in_flight": 200})
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    # enough work for several epochs (1 s each), so the rescale lands with work left to move
    summary = produce_traffic(settings, accounts=6_000, payments=120_000, seed=12, bad_ratio=0.02, progress=False)
    payments = summary.records["payments"]

    before = launch(render(helm, tmp_path, values_for(settings, replicas=2)), settings, tmp_path, workdir, "two")
    clusters.append(before)
    probe = LagProbe(settings)
    try:
        deadline = time.monotonic() + 300
        while probe.payments_committed() < payments // 4:
            assert all(before.alive()), before.returncodes()
            assert time.monotonic() < deadline, "the two pods committed too little"
            time.sleep(0.2)
        committed_before = probe.payments_committed()
    finally:
        probe.close()
    before.stop()
    assert committed_before < payments, "the rescale came too late to move unfinished work"

    rescaled = render(helm, tmp_path, values_for(settings, replicas=3))
    after = launch(rescaled, settings, tmp_path, workdir, "three")
    clusters.append(after)
    wait_until_caught_up(settings, payments, timeout=600, procs=after, progress=False)  # type: ignore[arg-type]
    after.stop()

    shared_tasks(tmp_path, "two", replicas=2, tasks=4)
    shared_tasks(tmp_path, "three", replicas=3, tasks=4)
    audit_passes(settings)


def test_changing_replicas_replaces_every_pod(helm: Path, tmp_path: Path) -> None:
    """A new replica count changes the pod template itself (the -a list), so the StatefulSet
    rolls every pod: a rescale, not an added pod."""
    templates = [one(render(helm, tmp_path, {"replicas": n}), "StatefulSet")["spec"]["template"] for n in (2, 3)]
    assert templates[0] != templates[1]
    assert templates[0]["spec"]["containers"][0]["args"] != templates[1]["spec"]["containers"][0]["args"]


def test_the_network_policy_lets_workers_reach_each_other_kafka_and_dns_only(helm: Path, tmp_path: Path) -> None:
    prometheus = {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}
    manifests = render(helm, tmp_path, {"networkPolicy": {"kafkaPorts": [9093], "metricsFrom": [prometheus]}})
    policy = one(manifests, "NetworkPolicy")["spec"]
    pod_labels = one(manifests, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    workers, scrapers = policy["ingress"]
    assert workers["from"] == [{"podSelector": policy["podSelector"]}]
    assert {p["port"] for p in workers["ports"]} == {9999, 9310}
    assert scrapers == {"from": [prometheus], "ports": [{"port": 9310, "protocol": "TCP"}]}
    to_workers, to_kafka, to_dns = policy["egress"]
    assert to_workers["to"] == [{"podSelector": policy["podSelector"]}]
    assert "to" not in to_kafka and to_kafka["ports"] == [{"port": 9093, "protocol": "TCP"}]
    assert {(p["port"], p["protocol"]) for p in to_dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    disabled = render(helm, tmp_path, {"networkPolicy": {"enabled": False}})
    assert not [m for m in disabled if m["kind"] == "NetworkPolicy"]
