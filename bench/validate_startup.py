"""Whole-process time of `irbot playbook validate playbooks/`, start to exit.

Target (issue: foundation): under 1.0 s on the 2-core development machine.
Usage: .venv/bin/python bench/validate_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time(cmd: list[str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return samples


def _row(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[max(0, round(0.9 * len(ordered)) - 1)]
    return (
        f"{label:<44} min {ordered[0]:.3f}s  p50 {statistics.median(ordered):.3f}s  "
        f"p90 {p90:.3f}s  max {ordered[-1]:.3f}s  (n={len(ordered)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    irbot = str(Path(sys.executable).parent / "irbot")
    count = len(list((ROOT / "playbooks").glob("*.yaml")))
    _time([irbot, "playbook", "validate", "playbooks/"], 2)  # warm the page cache
    print(
        _row("python -c pass (interpreter floor)", _time([sys.executable, "-c", "pass"], args.runs))
    )
    print(_row("irbot --version", _time([irbot, "--version"], args.runs)))
    samples = _time([irbot, "playbook", "validate", "playbooks/"], args.runs)
    print(_row(f"irbot playbook validate playbooks/ ({count} files)", samples))
    verdict = "PASS" if statistics.median(samples) < 1.0 else "FAIL"
    print(f"target p50 < 1.0 s: {verdict}")


if __name__ == "__main__":
    main()
