"""What a run carries with it: the pinned playbook text and everything needed to resume.

A :class:`RunSpec` is the DBOS workflow's only argument, so it is plain JSON-safe data
(DBOS stores it). It holds references and inputs, never secret values.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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
        loaded = _load_pinned(self.source, self.file)
        if loaded.sha256 != self.sha256:  # pragma: no cover - would mean a corrupted spec
            raise ValueError(f"run {self.run_id}: pinned playbook does not match its hash")
        return loaded


_PINNED: OrderedDict[tuple[str, str], LoadedPlaybook] = OrderedDict()
_PINNED_MAX = 32
_PINNED_LOCK = threading.Lock()


def _load_pinned(source: str, file: str) -> LoadedPlaybook:
    """Validation is a pure function of the text, and a LoadedPlaybook is frozen: runs of
    the same playbook version share one (a 500-step playbook took ~11-13% of its run to
    parse and check again at every start, bench/engine_overhead.py)."""
    with _PINNED_LOCK:
        found = _PINNED.get((source, file))
        if found is not None:
            _PINNED.move_to_end((source, file))
            return found
    return remember(load(source, file))


def remember(loaded: LoadedPlaybook) -> LoadedPlaybook:
    """Keep a validated playbook for the runs that pin its text (the process that starts
    a run has just validated it: a run worked in the same process need not again)."""
    with _PINNED_LOCK:
        _PINNED[(loaded.source, loaded.file)] = loaded
        _PINNED.move_to_end((loaded.source, loaded.file))
        while len(_PINNED) > _PINNED_MAX:
            _PINNED.popitem(last=False)
    return loaded
