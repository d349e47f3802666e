"""JSON Schema of the playbook language, for editors (YAML language servers).

The pydantic schema of :class:`Playbook` is extended so that an action step's
``with`` is checked against that action's own input model (``if action == X then
with: <schema of X>``), which gives completion of action arguments in an editor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.core.catalog import ActionSpec, default_catalog
from bot.core.playbook import Playbook

TEMPLATE = {
    "type": "string",
    "pattern": r"\{\{|\{%",
    "description": "a template, checked when the run resolves it",
}
"""Any ``with`` value may be a template; its type is only known when it is rendered."""

SCHEMA_ID = "https://github.com/irbot/irbot/schemas/playbook-v1.json"


def playbook_schema(catalog: Mapping[str, ActionSpec] | None = None) -> dict[str, Any]:
    catalog = default_catalog() if catalog is None else catalog
    schema = Playbook.model_json_schema(by_alias=True)
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    branches = []
    for name in sorted(catalog):
        spec = catalog[name]
        action_schema: dict[str, Any] = {"type": "object"}
        if spec.inputs is not None:
            action_schema = spec.inputs.model_json_schema(
                by_alias=True, ref_template="#/$defs/{model}"
            )
            defs.update(action_schema.pop("$defs", {}))
            action_schema["description"] = spec.summary
            for name_, prop in list(action_schema.get("properties", {}).items()):
                action_schema["properties"][name_] = {"anyOf": [prop, TEMPLATE]}
        branches.append(
            {
                "if": {"properties": {"action": {"const": name}}, "required": ["action"]},
                "then": {"properties": {"with": action_schema}},
            }
        )
    for step_def in ("ActionStep", "Compensation"):
        target = defs[step_def]
        target["properties"]["action"]["enum"] = sorted(catalog)
        target["allOf"] = branches
    schema["properties"]["triggers"]["items"] = _trigger_items(defs)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "irbot playbook"
    return schema


def _trigger_items(defs: dict[str, Any]) -> dict[str, Any]:
    """Triggers are written ``- pagerduty: {...}``: one key naming the kind."""
    variants = []
    for def_name in (
        "GithubSecretScanningTrigger",
        "PagerDutyTrigger",
        "AlertmanagerTrigger",
        "GenericTrigger",
    ):
        body = defs[def_name]
        kind = body["properties"].pop("kind")["default"]
        if "kind" in body.get("required", []):
            body["required"].remove("kind")
        variants.append(
            {
                "type": "object",
                "properties": {kind: {"$ref": f"#/$defs/{def_name}"}},
                "required": [kind],
                "additionalProperties": False,
            }
        )
    return {"oneOf": variants}
