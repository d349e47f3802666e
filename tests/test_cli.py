"""The ``irbot`` console script, run for real in a subprocess: output, JSON and exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bot import __version__

IRBOT = Path(sys.executable).parent / "irbot"
REPO = Path(__file__).resolve().parents[1]
PLAYBOOKS = REPO / "playbooks"
SEEDS = ("compromise-detection", "leak-response", "lost-access", "rotate-api-key")
LEAK_INPUTS = ("secret_id", "deployments", "namespace", "email_to")

DIAGNOSTIC_LINE = re.compile(
    r"^(?P<file>[^\s:]+):(?P<line>\d+):(?P<column>\d+): "
    r"(?P<severity>error|warning)\[(?P<code>[a-z-]+)\]: (?P<message>.+)$",
    re.MULTILINE,
)
HEX64 = re.compile(r"^[0-9a-f]{64}$")

BROKEN = """\
name: broken
version: 1
steps:
  - id: rotate
    action: aws.secretsmanager.rotatee
    with: {secret_id: "{{ inputs.nope }}"}
  - id: rotate_again
    action: aws.secretsmanager.rotate
    with: {}
"""

NOT_YAML = "name: [unclosed\nsteps: {\n"

HELLO = """\
name: hello
version: 3
description: Say hello.
inputs:
  who: {type: string, description: whom to greet}
steps:
  - id: greet
    action: slack.post
    with: {text: "hello {{ inputs.who }}"}
"""


def irbot(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script with a clean, colour-free environment."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"IRBOT_PLAYBOOKS", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    }
    clean.update({"NO_COLOR": "1", "COLUMNS": "200", **(env or {})})
    return subprocess.run(
        [str(IRBOT), *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def leak_plan(*inputs: str, as_json: bool = True) -> subprocess.CompletedProcess[str]:
    args = ["playbook", "plan", "leak-response"]
    for pair in inputs:
        args += ["--input", pair]
    if as_json:
        args.append("--json")
    return irbot(*args)


def plan_json(*inputs: str) -> dict[str, Any]:
    proc = leak_plan(*inputs)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def gate_digest(plan: dict[str, Any], gate: str = "approve") -> str:
    (found,) = [g for g in plan["gates"] if g["id"] == gate]
    digest: str = found["digest"]
    return digest


def seed_yaml(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((PLAYBOOKS / f"{name}.yaml").read_text("utf-8"))
    return data


@pytest.fixture(scope="module")
def leak_text() -> subprocess.CompletedProcess[str]:
    """Text plan of leak-response with two deployments (shared: it is slow to start)."""
    return leak_plan("secret_id=prod/db", "deployments=api,worker", as_json=False)


@pytest.fixture(scope="module")
def leak_json() -> dict[str, Any]:
    """JSON plan of leak-response with the same inputs as ``leak_text``."""
    return plan_json("secret_id=prod/db", "deployments=api,worker")


@pytest.fixture
def books(tmp_path: Path) -> Path:
    """A directory with one valid, one broken and one unparsable playbook."""
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "hello.yaml").write_text(HELLO, "utf-8")
    (folder / "broken.yaml").write_text(BROKEN, "utf-8")
    (folder / "mangled.yml").write_text(NOT_YAML, "utf-8")
    (folder / "notes.txt").write_text("not a playbook", "utf-8")
    return folder


@pytest.fixture
def hello_dir(tmp_path: Path) -> Path:
    """A playbook directory holding only the ``hello`` playbook."""
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "hello.yaml").write_text(HELLO, "utf-8")
    return folder


# --------------------------------------------------------------------------- version


def test_version_matches_package() -> None:
    """`irbot --version` prints the package version and exits 0."""
    proc = irbot("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"irbot, version {__version__}"


# --------------------------------------------------------------------------- validate


def test_validate_seed_playbooks_ok() -> None:
    """Validating playbooks/ exits 0 and names every seed file as ok."""
    proc = irbot("playbook", "validate", "playbooks/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in SEEDS:
        assert re.search(rf"^ok\s+playbooks/{name}\.yaml$", proc.stdout, re.MULTILINE), name
    assert "4 playbook(s) valid" in proc.stdout
    assert not DIAGNOSTIC_LINE.search(proc.stdout)
    assert proc.stderr == ""


def test_validate_defaults_to_playbooks_dir() -> None:
    """Without a path, validate checks ./playbooks."""
    proc = irbot("playbook", "validate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 playbook(s) valid" in proc.stdout


def test_validate_broken_reports_compiler_style_lines(books: Path) -> None:
    """A broken playbook exits 1 with `file:line:col: error[code]: message` lines on stdout."""
    proc = irbot("playbook", "validate", "books", cwd=books.parent)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = [m.groupdict() for m in DIAGNOSTIC_LINE.finditer(proc.stdout)]
    broken = {(d["code"], int(d["line"]), int(d["column"])) for d in found if "broken" in d["file"]}
    assert ("unknown-action", 5, 13) in broken
    assert ("reference", 6, 23) in broken
    assert ("ungated-destructive", 8, 5) in broken
    assert ("action-input", 9, 5) in broken
    assert {d["file"] for d in found} == {"books/broken.yaml", "books/mangled.yml"}
    assert any(d["code"] == "yaml" for d in found if d["file"] == "books/mangled.yml")
    assert all(d["severity"] == "error" for d in found)
    assert "did you mean 'aws.secretsmanager.rotate'?" in proc.stdout
    assert re.search(r"^invalid\s+books/broken\.yaml$", proc.stdout, re.MULTILINE)
    assert re.search(r"^invalid\s+books/mangled\.yml$", proc.stdout, re.MULTILINE)
    assert re.search(r"^ok\s+books/hello\.yaml$", proc.stdout, re.MULTILINE)
    assert "notes.txt" not in proc.stdout
    assert "2 of 3 playbook(s) invalid" in proc.stdout


def test_validate_single_file_argument(books: Path) -> None:
    """A file path is validated on its own; a valid one exits 0."""
    proc = irbot("playbook", "validate", "books/hello.yaml", cwd=books.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 playbook(s) valid" in proc.stdout


def test_validate_json_shape(books: Path) -> None:
    """validate --json prints ok, files and fully located diagnostics, and still exits 1."""
    proc = irbot("playbook", "validate", "--json", "books", cwd=books.parent)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is False
    files = {f["path"]: f for f in data["files"]}
    assert set(files) == {"books/broken.yaml", "books/hello.yaml", "books/mangled.yml"}
    assert files["books/hello.yaml"] == {
        "path": "books/hello.yaml",
        "playbook": "hello",
        "ok": True,
        "diagnostics": [],
    }
    assert files["books/broken.yaml"]["playbook"] == "broken"
    assert files["books/mangled.yml"]["playbook"] is None
    for entry in (files["books/broken.yaml"], files["books/mangled.yml"]):
        assert entry["ok"] is False
        assert entry["diagnostics"]
        for diag in entry["diagnostics"]:
            assert {"file", "line", "column", "code", "message", "severity"} <= set(diag)
            assert diag["file"] == entry["path"]
            assert isinstance(diag["line"], int)
            assert diag["line"] >= 1
            assert isinstance(diag["column"], int)
            assert diag["column"] >= 1
            assert diag["severity"] in {"error", "warning"}
            assert diag["message"]
    codes = {d["code"] for d in files["books/broken.yaml"]["diagnostics"]}
    assert {"unknown-action", "reference", "ungated-destructive", "action-input"} <= codes


def test_validate_json_seed_ok() -> None:
    """validate --json on the seed playbooks says ok for each, with their names."""
    proc = irbot("playbook", "validate", "--json", "playbooks")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is True
    assert sorted(f["playbook"] for f in data["files"]) == list(SEEDS)
    assert all(f["ok"] for f in data["files"])


def test_validate_missing_path_exits_2(tmp_path: Path) -> None:
    """A path that does not exist is a usage error (exit 2) named on stderr."""
    proc = irbot("playbook", "validate", "no/such/dir", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "no such file or directory: no/such/dir" in proc.stderr


def test_validate_missing_path_json(tmp_path: Path) -> None:
    """With --json a missing path is a JSON error object on stdout, still exit 2."""
    proc = irbot("playbook", "validate", "--json", "gone.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    error = json.loads(proc.stdout)
    assert error["error"] == "UsageError"
    assert "gone.yaml" in error["message"]


def test_validate_empty_dir_exits_2(tmp_path: Path) -> None:
    """A directory without *.yaml/*.yml files is a usage error, not a silent success."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("nothing here", "utf-8")
    proc = irbot("playbook", "validate", "empty", cwd=tmp_path)
    assert proc.returncode == 2
    assert "no playbooks" in proc.stderr
    assert "empty" in proc.stderr


def test_validate_uses_env_dir(hello_dir: Path, tmp_path: Path) -> None:
    """Without a path, validate checks $IRBOT_PLAYBOOKS."""
    proc = irbot("playbook", "validate", cwd=tmp_path, env={"IRBOT_PLAYBOOKS": str(hello_dir)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hello.yaml" in proc.stdout
    assert "1 playbook(s) valid" in proc.stdout


# --------------------------------------------------------------------------- plan (text)


def test_plan_lists_every_step(leak_text: subprocess.CompletedProcess[str]) -> None:
    """The text plan shows each step id of leak-response, numbered in order."""
    assert leak_text.returncode == 0, leak_text.stderr
    ids = [step["id"] for step in seed_yaml("leak-response")["steps"]]
    lines = leak_text.stdout.splitlines()
    numbered = [
        m.group(1) for line in lines if (m := re.match(r"^\s*\d+\. (\S+)\s", line)) is not None
    ]
    assert numbered == ids


def test_plan_marks_destructive_steps(leak_text: subprocess.CompletedProcess[str]) -> None:
    """rotate and restart are DESTRUCTIVE, guarded by approve; nothing else is."""
    marked = [line for line in leak_text.stdout.splitlines() if "DESTRUCTIVE" in line]
    assert len(marked) == 2
    for step_id in ("rotate", "restart"):
        (line,) = [m for m in marked if re.match(rf"^\s*\d+\. {step_id}\s", m)]
        assert line.rstrip().endswith("DESTRUCTIVE, guarded by approve")
    assert "UNGUARDED" not in leak_text.stdout


def test_plan_shows_digest_and_inputs(
    leak_text: subprocess.CompletedProcess[str], leak_json: dict[str, Any]
) -> None:
    """The text plan shows resolved inputs, the content hash and the gate's plan digest."""
    out = leak_text.stdout
    assert out.splitlines()[0] == f"leak-response v1  sha256 {leak_json['sha256'][:12]}"
    assert (
        "inputs: secret_id=prod/db  deployments=api,worker  namespace=production  email_to=(none)"
        in out
    )
    digest = gate_digest(leak_json)
    assert f"covers: rotate, restart; plan digest {digest[:12]}" in out


def test_plan_shows_per_item_arguments(leak_text: subprocess.CompletedProcess[str]) -> None:
    """for_each steps list resolved arguments per item of deployments=api,worker."""
    out = leak_text.stdout
    assert "for each of: api,worker" in out
    for item in ("api", "worker"):
        assert re.search(
            rf"^\s+\[{item}\] name: {item}  namespace: production  wait: True", out, re.MULTILINE
        ), item
    assert "secret_id: prod/db" in out
    assert "skipped: its `when` is false for these inputs" in out


# --------------------------------------------------------------------------- plan (json)


def test_plan_json_shape(leak_json: dict[str, Any]) -> None:
    """plan --json has every step, the gate with what it covers, and 64-hex digests."""
    plan = leak_json
    assert plan["playbook"] == "leak-response"
    assert plan["version"] == 1
    assert HEX64.match(plan["sha256"])
    assert plan["inputs"] == {
        "secret_id": "prod/db",
        "deployments": ["api", "worker"],
        "namespace": "production",
        "email_to": [],
    }
    steps = {s["id"]: s for s in plan["steps"]}
    assert [s["id"] for s in plan["steps"]] == [
        s["id"] for s in seed_yaml("leak-response")["steps"]
    ]
    assert {k for k, s in steps.items() if s["destructive"]} == {"rotate", "restart"}
    assert steps["rotate"]["guarded_by"] == "approve"
    assert steps["rotate"]["arguments"] == {"secret_id": "prod/db"}
    assert steps["restart"]["guarded_by"] == "approve"
    assert steps["restart"]["items"] == ["api", "worker"]
    assert [a["name"] for a in steps["restart"]["arguments"]] == ["api", "worker"]
    assert {a["namespace"] for a in steps["restart"]["arguments"]} == {"production"}
    assert steps["email"]["when"] is False
    (gate,) = plan["gates"]
    assert gate["id"] == "approve"
    assert gate["min"] == 2
    assert gate["covers"] == ["rotate", "restart"]
    assert gate["approvers"] == ["group:sre", "group:security"]
    assert HEX64.match(gate["digest"])


def test_plan_digest_is_deterministic(leak_json: dict[str, Any]) -> None:
    """The same inputs give the same plan digest in another process."""
    again = plan_json("deployments=api,worker", "secret_id=prod/db")
    assert gate_digest(again) == gate_digest(leak_json)


def test_plan_digest_follows_covered_inputs(leak_json: dict[str, Any]) -> None:
    """Changing an input a covered step uses (secret_id, deployments) changes the digest."""
    base = gate_digest(leak_json)
    other_secret = plan_json("secret_id=prod/other", "deployments=api,worker")
    assert gate_digest(other_secret) != base
    other_deployments = plan_json("secret_id=prod/db", "deployments=api")
    assert gate_digest(other_deployments) != base
    assert other_deployments["sha256"] == leak_json["sha256"]


# --------------------------------------------------------------------------- plan errors


def test_plan_missing_required_input() -> None:
    """A missing required input exits 2 and names the input."""
    proc = leak_plan("deployments=api", as_json=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "missing required input 'secret_id'" in proc.stderr


def test_plan_malformed_input() -> None:
    """An --input without '=' (or without a key) exits 2 saying it is not key=value."""
    proc = leak_plan("secret_id=prod/db", "deployments", "=x", as_json=False)
    assert proc.returncode == 2
    assert "'deployments' is not key=value" in proc.stderr
    assert "'=x' is not key=value" in proc.stderr


def test_plan_unknown_input_suggests() -> None:
    """An unknown input exits 2 with a did-you-mean and the declared inputs."""
    proc = leak_plan("secret_id=prod/db", "namespce=prod", as_json=False)
    assert proc.returncode == 2
    assert "unknown input 'namespce'; did you mean 'namespace'?" in proc.stderr
    assert "inputs: " + ", ".join(LEAK_INPUTS) in proc.stderr


def test_plan_bad_input_value() -> None:
    """An input that breaks its declared pattern exits 2 naming the input."""
    proc = leak_plan("secret_id=prod db!", as_json=False)
    assert proc.returncode == 2
    assert "input 'secret_id'" in proc.stderr


def test_plan_unknown_playbook_lists_known() -> None:
    """An unknown playbook name exits 2, suggests the closest and lists the known ones."""
    proc = irbot("playbook", "plan", "leak-respons", "--input", "secret_id=x")
    assert proc.returncode == 2
    assert "no playbook named 'leak-respons'; did you mean 'leak-response'?" in proc.stderr
    assert "known: " + ", ".join(SEEDS) in proc.stderr


def test_plan_json_error_object_for_input() -> None:
    """plan --json on bad input prints a JSON error object with every problem, exit 2."""
    proc = leak_plan("secret_idd=x", "oops")
    assert proc.returncode == 2
    error = json.loads(proc.stdout)
    assert error["error"] == "InputError"
    assert error["playbook"] == "leak-response"
    problems = error["problems"]
    assert any("did you mean 'secret_id'" in p for p in problems)
    assert any("'oops' is not key=value" in p for p in problems)
    assert any("missing required input 'secret_id'" in p for p in problems)
    assert error["message"].startswith("invalid input for playbook 'leak-response'")


def test_plan_json_error_object_for_unknown_playbook() -> None:
    """plan --json for an unknown playbook prints a NotFoundError object, exit 2."""
    proc = irbot("playbook", "plan", "nope", "--json")
    assert proc.returncode == 2
    error = json.loads(proc.stdout)
    assert error["error"] == "NotFoundError"
    assert "'nope'" in error["message"]
    assert all(name in error["message"] for name in SEEDS)


def test_plan_without_playbooks_dir(tmp_path: Path) -> None:
    """Outside the repo (no ./playbooks) plan exits 2 naming the missing directory."""
    proc = irbot("playbook", "plan", "leak-response", "-i", "secret_id=x", cwd=tmp_path)
    assert proc.returncode == 2
    assert "no such file or directory: playbooks" in proc.stderr


# --------------------------------------------------------------------------- other dirs


def test_plan_playbooks_option(hello_dir: Path, tmp_path: Path) -> None:
    """--playbooks DIR plans a playbook from that directory."""
    proc = irbot(
        "playbook", "plan", "hello", "-i", "who=ops", "--playbooks", str(hello_dir), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("hello v3")
    assert "text: hello ops" in proc.stdout


def test_plan_playbooks_option_hides_seeds(hello_dir: Path) -> None:
    """With --playbooks DIR the seed playbooks are not known, even from the repo root."""
    proc = irbot("playbook", "plan", "leak-response", "--playbooks", str(hello_dir))
    assert proc.returncode == 2
    assert "(known: hello)" in proc.stderr


def test_plan_env_var(hello_dir: Path, tmp_path: Path) -> None:
    """IRBOT_PLAYBOOKS selects the playbook directory for plan."""
    proc = irbot(
        "playbook",
        "plan",
        "hello",
        "-i",
        "who=ops",
        "--json",
        cwd=tmp_path,
        env={"IRBOT_PLAYBOOKS": str(hello_dir)},
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["playbook"] == "hello"
    assert plan["steps"][0]["arguments"] == {"text": "hello ops"}
    assert plan["gates"] == []


def test_option_beats_env_var(hello_dir: Path) -> None:
    """--playbooks wins over IRBOT_PLAYBOOKS."""
    proc = irbot(
        "playbook",
        "list",
        "--json",
        "--playbooks",
        str(PLAYBOOKS),
        env={"IRBOT_PLAYBOOKS": str(hello_dir)},
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(row["name"] for row in json.loads(proc.stdout)) == list(SEEDS)


def test_list_env_var(hello_dir: Path, tmp_path: Path) -> None:
    """IRBOT_PLAYBOOKS selects the directory that list shows."""
    proc = irbot(
        "playbook", "list", "--json", cwd=tmp_path, env={"IRBOT_PLAYBOOKS": str(hello_dir)}
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["name"] == "hello"
    assert row["version"] == 3
    assert row["inputs"] == {"who": {"type": "string", "required": True, "default": None}}


# --------------------------------------------------------------------------- list


def test_list_text() -> None:
    """list shows the four seed playbooks with their inputs (optional ones marked '?')."""
    proc = irbot("playbook", "list")
    assert proc.returncode == 0, proc.stderr
    for name in SEEDS:
        assert name in proc.stdout
    assert "secret_id, deployments?, namespace?, email_to?" in proc.stdout
    assert "access_key_id, window?, email_to?" in proc.stdout


def test_list_json() -> None:
    """list --json gives each seed playbook with exactly its declared inputs."""
    proc = irbot("playbook", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert sorted(rows) == list(SEEDS)
    for name in SEEDS:
        row = rows[name]
        declared = seed_yaml(name)["inputs"]
        assert row["valid"] is True
        assert row["version"] == 1
        assert row["file"] == f"playbooks/{name}.yaml"
        assert row["description"]
        assert list(row["inputs"]) == list(declared)
        for input_name, spec in declared.items():
            shown = row["inputs"][input_name]
            assert shown["type"] == spec["type"]
            assert shown["default"] == spec.get("default")
            assert shown["required"] is ("default" not in spec)
    assert list(rows["leak-response"]["inputs"]) == list(LEAK_INPUTS)
    assert rows["leak-response"]["inputs"]["namespace"]["default"] == "production"


def test_list_json_shows_invalid_files(books: Path) -> None:
    """list --json keeps invalid files, marked invalid, instead of failing."""
    proc = irbot("playbook", "list", "--json", "--playbooks", str(books))
    assert proc.returncode == 0, proc.stderr
    rows = {Path(row["file"]).name: row for row in json.loads(proc.stdout)}
    assert rows["hello.yaml"]["valid"] is True
    assert rows["broken.yaml"]["valid"] is False
    assert rows["mangled.yml"]["valid"] is False
    assert rows["mangled.yml"]["name"] is None


# --------------------------------------------------------------------------- schema


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The schema printed by `irbot playbook schema`."""
    proc = irbot("playbook", "schema")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_schema_is_json(schema: dict[str, Any]) -> None:
    """schema prints a JSON Schema document describing the playbook's top level."""
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert {"name", "version", "steps"} <= set(schema["required"])
    assert {"name", "version", "steps", "inputs", "triggers"} <= set(schema["properties"])


def test_schema_rotate_requires_secret_id(schema: dict[str, Any]) -> None:
    """In $defs.ActionStep, the branch for aws.secretsmanager.rotate requires with.secret_id."""
    action_step = schema["$defs"]["ActionStep"]
    assert "aws.secretsmanager.rotate" in action_step["properties"]["action"]["enum"]
    branches = [
        b
        for b in action_step["allOf"]
        if b["if"]["properties"]["action"].get("const") == "aws.secretsmanager.rotate"
    ]
    assert len(branches) == 1
    with_schema = branches[0]["then"]["properties"]["with"]
    assert "secret_id" in with_schema["required"]
    assert "secret_id" in with_schema["properties"]


def test_schema_is_valid_draft_2020_12(schema: dict[str, Any]) -> None:
    """The printed schema is itself a valid Draft 2020-12 schema (needs jsonschema)."""
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_checks_action_arguments(schema: dict[str, Any]) -> None:
    """A literal rotate step passes the schema and one without secret_id fails."""
    validator = jsonschema.Draft202012Validator(schema)
    good = {
        "name": "literal",
        "version": 1,
        "steps": [
            {"id": "approve", "approval": {"from": ["group:sre"]}},
            {"id": "rotate", "action": "aws.secretsmanager.rotate", "with": {"secret_id": "a/b"}},
        ],
    }
    assert list(validator.iter_errors(good)) == []
    bad = json.loads(json.dumps(good))
    bad["steps"][1]["with"] = {}
    assert list(validator.iter_errors(bad))
    wrong_type = json.loads(json.dumps(good))
    wrong_type["steps"][1]["with"]["secret_id"] = 5
    assert list(validator.iter_errors(wrong_type))


@pytest.mark.parametrize("path", sorted(PLAYBOOKS.glob("*.yaml")), ids=lambda p: p.stem)
def test_schema_accepts_seed_playbooks(schema: dict[str, Any], path: Path) -> None:
    """Editors using the schema accept every seed playbook (templates included)."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(document))
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []
