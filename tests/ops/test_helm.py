"""Helm chart: lints strictly, renders for Kubernetes 1.28 / 1.30 / 1.33 with and without the Prometheus
Operator CRDs, validates against those versions' schemas (kubernetes-validate, strict), and the rendered
objects are what the chart promises (native sidecar or fallback, security context, monitoring objects)."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.cli import check_admin_exposure
from sidecar.settings import load_settings
from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "claude-sidecar"
NATIVE_VALUES = CHART / "ci" / "native-values.yaml"
VERSIONS = ("1.28.0", "1.30.0", "1.33.0")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
Doc = dict[str, Any]


def helm() -> str:
    """helm from $HELM, scripts/install-helm's .tools/bin, or PATH."""
    candidates = [
        os.environ.get("HELM", ""),
        str(ROOT / ".tools" / "bin" / "helm"),
        shutil.which("helm") or "",
    ]
    found = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    require_service(found is not None, "helm (install with scripts/install-helm)")
    assert found is not None
    return found


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, cwd=ROOT)


@functools.cache
def render(version: str, native: bool, crds: bool, *sets: str) -> tuple[Doc, ...]:
    args = ["template", "t", str(CHART), "--namespace", "agents", "--kube-version", version]
    if native:
        args += ["-f", str(NATIVE_VALUES)]
    if crds:
        args += ["--api-versions", "monitoring.coreos.com/v1"]
    for item in sets:
        args += ["--set", item]
    done = run_helm(*args)
    assert done.returncode == 0, done.stderr
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def one(docs: tuple[Doc, ...], kind: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def pod_spec(docs: tuple[Doc, ...]) -> Doc:
    spec: Doc = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def sidecar_container(docs: tuple[Doc, ...]) -> Doc:
    spec = pod_spec(docs)
    found = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == "claude-sidecar"]
    assert len(found) == 1
    container: Doc = found[0]
    return container


def env_of(container: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_helm_lint_strict() -> None:
    for extra in ([], ["-f", str(NATIVE_VALUES)]):
        for version in ("1.28.0", "1.33.0"):
            done = run_helm("lint", "--strict", str(CHART), "--kube-version", version, *extra)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("native", [False, True], ids=["standalone", "native"])
@pytest.mark.parametrize("crds", [False, True], ids=["no-crds", "crds"])
def test_rendered_objects_validate_strictly(version: str, native: bool, crds: bool) -> None:
    require_service(importlib.util.find_spec("kubernetes_validate") is not None, "kubernetes-validate (PyPI)")
    kv: Any = importlib.import_module("kubernetes_validate.utils")
    docs = render(version, native, crds)
    unvalidated = set()
    for doc in docs:
        try:
            kv.validate(doc, version, strict=True)
        except kv.SchemaNotFoundError:
            unvalidated.add(doc["kind"])
        except kv.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {exc.message}")
    assert unvalidated == (CRD_KINDS if crds else set())


def test_validation_can_fail() -> None:
    """The strict schemas reject what a version does not know: a native sidecar on Kubernetes 1.27."""
    require_service(importlib.util.find_spec("kubernetes_validate") is not None, "kubernetes-validate (PyPI)")
    kv: Any = importlib.import_module("kubernetes_validate.utils")
    deployment = one(render("1.30.0", True, False), "Deployment")
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, "1.27.0", strict=True)


@pytest.mark.parametrize("version", ["1.30.0", "1.33.0"])
def test_native_sidecar_is_a_restartable_init_container(version: str) -> None:
    spec = pod_spec(render(version, True, False))
    assert [c["name"] for c in spec["initContainers"]] == ["claude-sidecar"]
    assert spec["initContainers"][0]["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == ["app"]
    app_env = env_of(spec["containers"][0])
    assert app_env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8788"
    assert app_env["LOG_LEVEL"] == "info"


def test_native_mode_falls_back_to_a_regular_container_below_1_29() -> None:
    spec = pod_spec(render("1.28.0", True, False))
    assert "initContainers" not in spec
    assert [c["name"] for c in spec["containers"]] == ["claude-sidecar", "app"]
    assert all("restartPolicy" not in c for c in spec["containers"])


@pytest.mark.parametrize("version", VERSIONS)
def test_standalone_runs_only_the_sidecar_on_all_interfaces(version: str) -> None:
    docs = render(version, False, False)
    spec = pod_spec(docs)
    assert "initContainers" not in spec
    assert [c["name"] for c in spec["containers"]] == ["claude-sidecar"]
    assert env_of(spec["containers"][0])["SIDECAR_HOST"] == "0.0.0.0"
    ports = {p["name"]: p["port"] for p in one(docs, "Service")["spec"]["ports"]}
    assert ports == {"admin": 8791, "proxy": 8788}


def test_proxy_on_loopback_and_admin_listener_on_the_pod_network() -> None:
    docs = render("1.33.0", True, False)
    container = sidecar_container(docs)
    env = env_of(container)
    assert env["SIDECAR_HOST"] == "127.0.0.1"
    assert (env["SIDECAR_ADMIN_HOST"], env["SIDECAR_ADMIN_PORT"]) == ("0.0.0.0", "8791")
    secret_name = one(docs, "Secret")["metadata"]["name"]
    assert env["SIDECAR_ADMIN_TOKEN"] == {"secretKeyRef": {"name": secret_name, "key": "admin-token"}}
    key_ref = env["SIDECAR_UPSTREAM_API_KEY"]["secretKeyRef"]
    assert key_ref == {"name": secret_name, "key": "upstream-api-key", "optional": True}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"proxy": 8788, "admin": 8791}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    # Native mode exposes the admin port and the app's own ports, not the loopback-only proxy.
    assert {p["name"] for p in one(docs, "Service")["spec"]["ports"]} == {"admin", "http"}


def test_security_context_is_non_root_read_only_and_drops_all() -> None:
    docs = render("1.33.0", True, False)
    spec = pod_spec(docs)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    for container in spec["initContainers"] + spec["containers"]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
    mounts = {m["mountPath"] for m in sidecar_container(docs)["volumeMounts"]}
    assert {"/var/lib/claude-sidecar", "/tmp", "/etc/claude-sidecar"} <= mounts


def test_secret_holds_the_key_only_when_given() -> None:
    plain = one(render("1.33.0", False, False), "Secret")["data"]
    assert set(plain) == {"admin-token"}
    with_key = one(render("1.33.0", False, False, "secret.upstreamApiKey=sk-ant-test"), "Secret")["data"]
    assert set(with_key) == {"admin-token", "upstream-api-key"}
    assert with_key["upstream-api-key"] == "c2stYW50LXRlc3Q="  # base64("sk-ant-test")


def test_rendered_configuration_is_accepted_by_the_sidecar(tmp_path: Path) -> None:
    docs = render("1.33.0", True, False)
    config = tmp_path / "sidecar.yaml"
    (config_map,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "t-claude-sidecar"
    ]
    config.write_text(config_map["data"]["sidecar.yaml"], encoding="utf-8")
    env = {k: v for k, v in env_of(sidecar_container(docs)).items() if isinstance(v, str)}
    env |= {"SIDECAR_CONFIG": str(config), "SIDECAR_ADMIN_TOKEN": "from-the-secret"}
    settings = load_settings(env=env)
    assert (settings.host, settings.port, settings.admin_host, settings.admin_port) == (
        "127.0.0.1",
        8788,
        "0.0.0.0",
        8791,
    )
    assert settings.store == "sqlite:////var/lib/claude-sidecar/events.db"
    assert settings.prompt_cache == "auto"
    assert settings.policies["budgets"]["defaults"]["session_max_usd"] == 2.0
    check_admin_exposure(settings)  # would refuse to start without the token on 0.0.0.0


def test_no_monitoring_objects_without_the_crds() -> None:
    for version in VERSIONS:
        kinds = {d["kind"] for d in render(version, False, False)}
        assert not kinds & CRD_KINDS, version


def test_service_monitor_scrapes_the_admin_port_as_job_claude_sidecar() -> None:
    docs = render("1.33.0", True, True)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [
        {"port": "admin", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    service_labels = one(docs, "Service")["metadata"]["labels"]
    assert service_labels[monitor["spec"]["jobLabel"]] == "claude-sidecar"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_prometheus_rule_is_built_from_alerts() -> None:
    rules = yaml.safe_load((ROOT / "alerts" / "claude-sidecar.rules.yml").read_text(encoding="utf-8"))
    rule = one(render("1.30.0", False, True), "PrometheusRule")
    assert rule["spec"] == rules
    base = "https://git.example/ops/claude-sidecar/blob/main"
    linked = one(render("1.30.0", False, True, f"prometheusRule.runbookBaseUrl={base}/"), "PrometheusRule")
    first = linked["spec"]["groups"][0]["rules"][0]
    assert first["annotations"]["runbook_url"] == f"{base}/docs/runbooks/{first['alert']}.md"


def test_dashboard_config_maps_carry_the_dashboards() -> None:
    maps = [
        d
        for d in render("1.33.0", False, False)
        if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    ]
    expected = {p.stem: p.read_text(encoding="utf-8") for p in (ROOT / "dashboards").glob("*.json")}
    assert len(maps) == len(expected) == 6
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = config_map["data"].items()
        stem = key.removeprefix("claude-sidecar-").removesuffix(".json")
        assert json.loads(text) == json.loads(expected[stem])
    assert not [
        d
        for d in render("1.33.0", False, False, "dashboards.enabled=false")
        if "dashboard" in d["metadata"]["name"]
    ]


def test_chart_files_are_copies_of_alerts_and_dashboards() -> None:
    files = CHART / "files"
    for source in [*(ROOT / "alerts").glob("*.rules.yml")]:
        assert (files / "alerts" / source.name).read_bytes() == source.read_bytes()
    for source in (ROOT / "dashboards").glob("*.json"):
        assert (files / "dashboards" / source.name).read_bytes() == source.read_bytes()
    assert {p.name for p in (files / "dashboards").iterdir()} == {
        p.name for p in (ROOT / "dashboards").glob("*.json")
    }


def test_schema_rejects_native_mode_without_an_app_image_and_unknown_keys() -> None:
    native = run_helm("template", "t", str(CHART), "--set", "mode=native")
    assert native.returncode != 0 and "schema" in native.stderr
    typo = run_helm("template", "t", str(CHART), "--set", "replicas=2")
    assert typo.returncode != 0 and "replicas" in typo.stderr


def test_dockerfile_is_multi_stage_and_runs_as_the_charts_non_root_user() -> None:
    """The image is not built in CI; this checks what the chart relies on."""
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2 and any(" AS build" in s for s in stages)
    assert any(line.startswith("COPY --from=build ") for line in lines)
    user = [line for line in lines if line.startswith("USER ")][-1]
    uid = next(line for line in lines if line.startswith("ARG UID=")).split("=")[1]
    assert user == "USER ${UID}:${UID}" and uid != "0"
    spec = pod_spec(render("1.33.0", False, False))
    assert str(spec["securityContext"]["runAsUser"]) == uid
    assert 'ENTRYPOINT ["claude-sidecar"]' in lines
    assert sidecar_container(render("1.33.0", False, False))["args"] == ["serve"]
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignored and "!sidecar/" in ignored


def render_notes(tmp_path: Path, *args: str) -> str:
    """NOTES.txt as helm would print it (helm template skips it, so a copy of the chart renders it)."""
    chart = tmp_path / "chart"
    if not chart.exists():
        shutil.copytree(CHART, chart)
        notes = (chart / "templates" / "NOTES.txt").read_text(encoding="utf-8")
        (chart / "templates" / "_notes.tpl").write_text('{{- define "test.notes" }}' + notes + "{{- end }}")
        (chart / "templates" / "notes.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n"
            '    {{- include "test.notes" . | nindent 4 }}\n'
        )
    done = run_helm("template", "t", str(chart), "--show-only", "templates/notes.yaml", *args)
    assert done.returncode == 0, done.stderr
    text: str = yaml.safe_load(done.stdout)["data"]["notes"]
    return text


def test_notes_explain_mode_fallback_and_monitoring(tmp_path: Path) -> None:
    native = ["-f", str(NATIVE_VALUES)]
    old = render_notes(tmp_path, "--kube-version", "1.28.0", *native)
    assert "has no native sidecars" in old and "ANTHROPIC_BASE_URL=http://127.0.0.1:8788" in old
    assert "no ServiceMonitor" in old
    new = render_notes(
        tmp_path, "--kube-version", "1.33.0", "--api-versions", "monitoring.coreos.com/v1", *native
    )
    assert "restartPolicy: Always" in new and "A ServiceMonitor scrapes" in new
    standalone = render_notes(tmp_path, "--namespace", "agents")
    assert "ANTHROPIC_BASE_URL=http://t-claude-sidecar.agents.svc:8788" in standalone


CLOUD_VALUES = (
    "bedrock.region=eu-west-1",
    "bedrock.url=https://vpce-0abc.bedrock-runtime.eu-west-1.vpce.amazonaws.com",
    "bedrock.inferenceProfiles={eu.anthropic.claude-sonnet-4-5-20250929-v1:0}",
    "bedrock.irsaRoleArn=arn:aws:iam::123456789012:role/claude-sidecar",
    "bedrock.awsCredentials.existingSecret=aws-keys",
    "secret.bedrockApiKey=bedrock-api-key-test",
    "vertex.url=https://vertex.psc.example.internal",
    "vertex.gcpServiceAccount=sidecar@my-proj.iam.gserviceaccount.com",
    "vertex.credentials.existingSecret=gcp-sa",
    "responseCache.mode=on",
    "responseCache.ttl=600",
    "responseCache.maxBytes=268435456",
    "responseCache.shared=true",
)


def test_cloud_providers_and_response_cache_are_off_by_default() -> None:
    docs = render("1.33.0", False, False)
    env = env_of(sidecar_container(docs))
    assert not {"SIDECAR_BEDROCK_REGION", "SIDECAR_VERTEX_URL", "AWS_ACCESS_KEY_ID"} & set(env)
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in env
    assert env["SIDECAR_RESPONSE_CACHE"] == "off"
    assert "annotations" not in one(docs, "ServiceAccount")["metadata"]
    assert all(v["name"] != "gcp-credentials" for v in pod_spec(docs)["volumes"])


def test_cloud_providers_and_response_cache_values_reach_the_sidecar(tmp_path: Path) -> None:
    docs = render("1.33.0", True, False, *CLOUD_VALUES)
    container = sidecar_container(docs)
    env = env_of(container)
    secret = one(docs, "Secret")
    name = secret["metadata"]["name"]
    assert secret["data"]["bedrock-api-key"] == "YmVkcm9jay1hcGkta2V5LXRlc3Q="  # base64 of the value
    assert env["SIDECAR_BEDROCK_API_KEY"] == {
        "secretKeyRef": {"name": name, "key": "bedrock-api-key", "optional": True}
    }
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "aws-keys", "key": "AWS_ACCESS_KEY_ID"}}
    assert env["AWS_SECRET_ACCESS_KEY"]["secretKeyRef"]["key"] == "AWS_SECRET_ACCESS_KEY"
    assert env["AWS_SESSION_TOKEN"]["secretKeyRef"]["optional"] is True
    assert one(docs, "ServiceAccount")["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/claude-sidecar",
        "iam.gke.io/gcp-service-account": "sidecar@my-proj.iam.gserviceaccount.com",
    }
    (volume,) = [v for v in pod_spec(docs)["volumes"] if v["name"] == "gcp-credentials"]
    assert volume["secret"] == {"secretName": "gcp-sa", "defaultMode": 0o440}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "gcp-credentials"]
    assert mount["readOnly"] is True
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == mount["mountPath"] + "/credentials.json"
    # The sidecar reads what the chart renders (the secrets as Kubernetes would resolve them).
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    plain |= {"SIDECAR_ADMIN_TOKEN": "from-the-secret", "SIDECAR_BEDROCK_API_KEY": "bedrock-api-key-test"}
    (tmp_path / "sidecar.yaml").write_text("{}\n", encoding="utf-8")
    plain["SIDECAR_CONFIG"] = str(tmp_path / "sidecar.yaml")
    settings = load_settings(env=plain)
    assert (settings.bedrock_region, settings.bedrock_url, settings.bedrock_api_key) == (
        "eu-west-1",
        "https://vpce-0abc.bedrock-runtime.eu-west-1.vpce.amazonaws.com",
        "bedrock-api-key-test",
    )
    assert settings.bedrock_inference_profiles == ("eu.anthropic.claude-sonnet-4-5-20250929-v1:0",)
    assert settings.vertex_url == "https://vertex.psc.example.internal"
    assert (settings.response_cache, settings.response_cache_ttl) == ("on", 600)
    assert (settings.response_cache_max_bytes, settings.response_cache_shared) == (268435456, True)


def test_cloud_values_validate_strictly_and_the_schema_refuses_bad_ones() -> None:
    require_service(importlib.util.find_spec("kubernetes_validate") is not None, "kubernetes-validate (PyPI)")
    kv: Any = importlib.import_module("kubernetes_validate.utils")
    for doc in render("1.30.0", False, False, *CLOUD_VALUES):
        kv.validate(doc, "1.30.0", strict=True)
    for bad in ("responseCache.mode=sometimes", "bedrock.url=https://host/path", "responseCache.ttl=0"):
        done = run_helm("template", "t", str(CHART), "--set", bad)
        assert done.returncode != 0 and "schema" in done.stderr, bad
