"""One sandbox installation: moto, the Kubernetes emulator and a fake Slack, under one dir.

::

    DIR/irbot.yaml                 the cast's groups (bot.sandbox.cast)
    DIR/playbooks/<name>.yaml      a copy of the checkout's seed playbook, unmodified
    DIR/kubeconfig                 points at the emulator
    DIR/data/                      SQLite: timeline store and DBOS system database
    DIR/irbot.log                  structured logs of the actions (JSON lines, redacted)

The process environment is the installation's: variables that could reach a real
system (``AWS_*``, ``SLACK_*``, ``PAGERDUTY_*``, ``IRBOT_*``, ``KUBECONFIG``,
``KUBERNETES_*``) are removed while the sandbox is open, and restored when it closes.
Everything the sandbox started is stopped at close; a temporary directory is removed
unless kept.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from bot.sandbox import SandboxError, cast
from bot.sandbox.aws import MotoServer
from bot.sandbox.kube import FakeKube
from bot.sandbox.slack import FakeSlack
from bot.settings import Settings, load_settings

if TYPE_CHECKING:
    from bot.logs import Choice

PLAYBOOK = "leak-response"
SECRET_ID = "prod/orders/db"  # noqa: S105 - a name in Secrets Manager, not a value
NAMESPACE = "production"
DEPLOYMENTS = ("orders-api", "orders-worker")
ROLLOUT_SECONDS = 1.0
"""How long the emulator's rollouts take: long enough to see the restart wait."""
SLACK_TOKEN = "xoxb-sandbox-demo-token"  # noqa: S105 - only the local fake accepts it

_SCRUBBED = re.compile(r"^(AWS_|SLACK_|PAGERDUTY_|IRBOT_|KUBERNETES_|KUBECONFIG$)")


def checkout_playbook(name: str) -> Path:
    """The seed playbook of the source tree irbot runs from."""
    path = Path(__file__).resolve().parents[2] / "playbooks" / f"{name}.yaml"
    if not path.is_file():
        raise SandboxError(
            f"the demo runs the seed playbook {name!r} and cannot find it at {path}; "
            "run it from a source checkout of irbot"
        )
    return path


@dataclass(frozen=True)
class Thread:
    """The incident's thread in the fake Slack: root text, then reply texts."""

    channel: str
    root: str
    replies: list[str]


class Sandbox:
    """Open with ``with Sandbox.create(...) as box:``; everything stops at the end."""

    def __init__(self, root: Path, *, temporary: bool, keep: bool) -> None:
        self.root = root
        self.temporary = temporary
        self.keep = keep
        self.moto = MotoServer()
        self.kube = FakeKube(delay=ROLLOUT_SECONDS)
        self.slack = FakeSlack(tokens=[SLACK_TOKEN])
        self.env: dict[str, str] = {}
        self._saved_env: dict[str, str] | None = None
        self._log: IO[str] | None = None
        self._logs_before: Choice | None = None
        self._started: list[Any] = []
        self._rollouts: dict[str, tuple[int, int, int, int]] = {}
        self.secret_arn = ""
        self.seeded_version = ""
        self._seeded_value = ""

    @classmethod
    def create(cls, data_dir: Path | None, *, keep: bool) -> Sandbox:
        """A sandbox in ``data_dir`` (must be empty or new; always kept) or a temp dir."""
        if data_dir is None:
            root = Path(tempfile.mkdtemp(prefix="irbot-demo-"))
            return cls(root, temporary=True, keep=keep)
        if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
            raise SandboxError(
                f"--data-dir {data_dir} is not an empty directory; pick a new one so this "
                "demo does not mix with other data"
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir.resolve(), temporary=False, keep=True)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Sandbox:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> Sandbox:
        """Start the stand-ins, write the installation's files, seed the demo data."""
        self.moto.start()
        self._started.append(self.moto)
        self.kube.start()
        self._started.append(self.kube)
        self.slack.start()
        self._started.append(self.slack)
        self._write_files()
        self._enter_env()
        self._configure_logs()
        self._seed()
        return self

    def close(self) -> None:
        """Stop what was started, restore the environment, remove a temporary root."""
        while self._started:
            self._started.pop().stop()
        self._restore_env()
        if self._log is not None:
            from bot import logs

            logs.restore(self._logs_before)  # the process's own logs, as before start()
            self._log.close()
            self._log = None
        if self.temporary and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def settings(self) -> Settings:
        return load_settings(self.env)

    # ------------------------------------------------------------------ set-up

    def _write_files(self) -> None:
        playbooks = self.root / "playbooks"
        playbooks.mkdir(exist_ok=True)
        shutil.copyfile(checkout_playbook(PLAYBOOK), playbooks / f"{PLAYBOOK}.yaml")
        (self.root / "irbot.yaml").write_text(cast.config_text((PLAYBOOK,)), encoding="utf-8")
        self.kube.write_kubeconfig(self.root / "kubeconfig", context="sandbox")
        (self.root / "aws").mkdir(exist_ok=True)

    def _enter_env(self) -> None:
        empty_aws_config = str(self.root / "aws" / "none")  # never the user's ~/.aws
        self.env = {
            **self.moto.env(),
            "AWS_CONFIG_FILE": empty_aws_config,
            "AWS_SHARED_CREDENTIALS_FILE": empty_aws_config,
            "KUBECONFIG": str(self.root / "kubeconfig"),
            "SLACK_BOT_TOKEN": SLACK_TOKEN,
            "SLACK_API_URL": self.slack.url,
            "IRBOT_DATA_DIR": str(self.root / "data"),
            "IRBOT_CONFIG": str(self.root / "irbot.yaml"),
            "IRBOT_PLAYBOOKS": str(self.root / "playbooks"),
        }
        self._saved_env = dict(os.environ)
        for name in [n for n in os.environ if _SCRUBBED.match(n)]:
            del os.environ[name]
        os.environ.update(self.env)
        from bot.actions.aws import client

        client.reset()  # boto3's session read the environment it had before

    def _restore_env(self) -> None:
        if self._saved_env is None:
            return
        os.environ.clear()
        os.environ.update(self._saved_env)
        self._saved_env = None
        from bot.actions.aws import client

        client.reset()

    def _configure_logs(self) -> None:
        """Action logs go to DIR/irbot.log as redacted JSON lines, not over the story."""
        from bot import logs

        self._log = (self.root / "irbot.log").open("a", encoding="utf-8")
        self._logs_before = logs.configure(json=True, stream=self._log)

    def _seed(self) -> None:
        """The leaked secret (a generic JSON credential) and the deployments that read it."""
        import boto3

        self._seeded_value = json.dumps(
            {"username": "orders_app", "password": secrets.token_urlsafe(24)}
        )
        sm = boto3.client("secretsmanager")
        created = sm.create_secret(
            Name=SECRET_ID,
            Description="irbot demo: the credential that leaked",
            SecretString=self._seeded_value,
        )
        self.secret_arn = str(created["ARN"])
        self.seeded_version = str(created["VersionId"])
        for name in DEPLOYMENTS:
            self.kube.add_deployment(NAMESPACE, name, replicas=3)

    # ------------------------------------------------------------------ inspect

    def current_version(self) -> str:
        """The version id that holds AWSCURRENT now."""
        import boto3

        listed = boto3.client("secretsmanager").list_secret_version_ids(SecretId=SECRET_ID)
        for version in listed["Versions"]:
            if "AWSCURRENT" in version.get("VersionStages", []):
                return str(version["VersionId"])
        raise SandboxError(f"{SECRET_ID} has no AWSCURRENT version")

    def secret_values(self) -> tuple[str, str]:
        """(seeded, current) values of the demo secret. Never print them: this exists so
        a test can prove they appear nowhere."""
        import boto3

        current = boto3.client("secretsmanager").get_secret_value(
            SecretId=SECRET_ID, VersionStage="AWSCURRENT"
        )
        return self._seeded_value, str(current["SecretString"])

    def restarted_at(self, name: str) -> str | None:
        """The deployment's ``kubectl.kubernetes.io/restartedAt`` annotation, if set."""
        template = self.kube.deployment(NAMESPACE, name)["spec"]["template"]
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        value = annotations.get("kubectl.kubernetes.io/restartedAt")
        return str(value) if value is not None else None

    def generation(self, name: str) -> int:
        return int(self.kube.deployment(NAMESPACE, name)["metadata"]["generation"])

    def rollout_news(self) -> list[str]:
        """One line per deployment whose rollout moved since the last call (the emulator's
        view: what ``kubectl rollout status`` would say while irbot waits)."""
        news = []
        for name in DEPLOYMENTS:
            obj = self.kube.deployment(NAMESPACE, name)
            status = obj["status"]
            state = (
                int(obj["metadata"]["generation"]),
                int(status.get("observedGeneration") or 0),
                int(status.get("updatedReplicas") or 0),
                int(status.get("replicas") or 0),
            )
            before = self._rollouts.get(name)
            self._rollouts[name] = state
            if before is None or before == state:
                continue
            generation, observed, updated = state[:3]
            want = int(obj["spec"]["replicas"])
            where = f"{NAMESPACE}/{name}"
            if observed < generation:
                news.append(f"{where}: restart patched (generation {generation}), rolling out")
            elif updated < want or state[3] > updated:
                news.append(f"{where}: {updated} of {want} pods replaced, {state[3]} running")
            else:
                news.append(f"{where}: rolled out, {updated} of {want} pods on the new template")
        return news

    def threads(self) -> list[Thread]:
        """Every thread irbot started in the notification channel, oldest first."""
        channel = self.slack.channel_id(cast.CHANNEL)
        return [
            Thread(cast.CHANNEL_NAME, root.text, [r.text for r in root.replies])
            for root in self.slack.messages(channel)
        ]
