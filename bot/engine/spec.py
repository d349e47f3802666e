"""What a run carries with it: the pinned playbook text and everything needed to resume.

A :class:`RunSpec` is the DBOS workflow's only argument, so it is plain JSON-safe data
(DBOS stores it). It holds references and inputs, never secret values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from bot.core.validate import LoadedPlaybook, load
from bot.store.records import RunRecord


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    incident_id: str
    requester: str
    playbook: str
    source: str
    """The playbook's exact text when the run started (pinned)."""
    sha256: str
    file: str
    inputs: dict[str, Any]
    library: dict[str, str] = field(default_factory=dict)
    """Pinned texts of the sub-playbooks this one may call, by name."""
    incident: dict[str, Any] = field(default_factory=dict)
    trigger: dict[str, Any] | None = None
    parent_run: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        return cls(**data)

    def record(self, *, version: int, inputs: dict[str, Any], at: datetime) -> RunRecord:
        """The store's record of this run, pending (``inputs`` already redacted)."""
        return RunRecord(
            id=self.run_id,
            incident_id=self.incident_id,
            playbook=self.playbook,
            version=version,
            sha256=self.sha256,
            inputs=inputs,
            requester=self.requester,
            status="pending",
            created_at=at,
            updated_at=at,
        )

    @cached_property
    def loaded(self) -> LoadedPlaybook:
        """The pinned playbook, re-validated (it was valid when the run was created)."""
        loaded = load(self.source, self.file)
        if loaded.sha256 != self.sha256:  # pragma: no cover - would mean a corrupted spec
            raise ValueError(f"run {self.run_id}: pinned playbook does not match its hash")
        return loaded
