"""What every benchmark script shares: the machine it ran on, and how its figures are saved and shown."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS_FOLDER = Path(__file__).resolve().parent / "results"


def machine(**extra: Any) -> dict[str, Any]:
    """CPUs, Python and the 1-minute load average now (a loaded machine explains a slow figure)."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg(), **extra}


def finish(main: Callable[[], dict[str, Any]], report: Callable[[dict[str, Any]], str], results: Path) -> None:
    """Run ``main``, save its figures (with the bench's own run time) to ``results`` as JSON, print the report."""
    started = time.perf_counter()
    figures = main()
    figures["bench_seconds"] = time.perf_counter() - started
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(report(figures))
    print(f"({figures['bench_seconds']:.0f} s; figures in {results})", file=sys.stderr)
