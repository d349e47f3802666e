"""The Kubernetes API emulator (:mod:`bot.sandbox.kube`) as pytest fixtures.

The server itself ships with irbot (``irbot demo`` runs it); this module re-exports it
and defines the fixtures. Importing the functions registers the fixtures ``kube`` and
``kubeconfig`` in a test module (their Python names differ so that test arguments named
``kube`` do not shadow an import)::

    from tests.fake_kube import FakeKube, kube_fixture, kubeconfig_fixture  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.sandbox.kube import (
    CONTEXT,
    CREATED,
    MERGE_TYPES,
    TOKEN,
    USER,
    ApiError,
    FakeKube,
    Fault,
    merge,
    status_body,
)

__all__ = [
    "CONTEXT",
    "CREATED",
    "MERGE_TYPES",
    "TOKEN",
    "USER",
    "ApiError",
    "FakeKube",
    "Fault",
    "kube_fixture",
    "kubeconfig_fixture",
    "merge",
    "status_body",
]


@pytest.fixture(name="kube")
def kube_fixture() -> Iterator[FakeKube]:
    """A running fake Kubernetes API server with a deployment controller (fresh per test).

    Arrange with ``add_deployment``/``add_secret``/``stall``/``deadline_exceeded``/
    ``set_delay``/``forbid``/``fail``; inspect with ``deployment``/``secret``/
    ``secret_value``/``patches``/``requests``. Use with the ``kubeconfig`` fixture.
    """
    fake = FakeKube().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(name="kubeconfig")
def kubeconfig_fixture(kube: FakeKube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Write a kubeconfig for ``kube`` (context ``fake``, token auth) and set KUBECONFIG.

    Child processes inherit it, so irbot workers reach the same fake.
    """
    path = kube.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path
