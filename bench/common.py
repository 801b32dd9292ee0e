"""What every benchmark here shares: naming the machine, the commit, and writing results.

Each benchmark prints JSON lines and writes ``bench/results/<name>-<cpu|cuda>-<date>.json``
with the device name, torch version, command line and git commit, so a figure in
docs/benchmarks.md can always be traced to the code and machine that produced it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def device_name(device: torch.device | None = None) -> str:
    """The GPU's name, or "cpu: <model name>" (platform.processor() is empty on many Linux
    builds, so /proc/cpuinfo is read first)."""
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"cpu: {name or platform.machine()} ({torch.get_num_threads()} threads)"


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work, so a timer measures it (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Fastest of ``repeats`` calls (the least disturbed by the machine), and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def git_commit() -> str | None:
    try:
        run = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return run.stdout.strip()


def header(name: str, device: torch.device | None = None) -> dict[str, Any]:
    """The fields every results file starts with."""
    return {
        "name": name,
        "date": dt.date.today().isoformat(),
        "device": device_name(device),
        "torch": torch.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git_commit": git_commit(),
    }


def write_results(result: dict[str, Any], device: torch.device | None = None) -> Path:
    """Write ``result`` (which has ``name`` and ``date``) to bench/results/ and say where."""
    kind = "cuda" if device is not None and device.type == "cuda" else "cpu"
    out = ROOT / "bench" / "results" / f"{result['name']}-{kind}-{result['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({"bench": result["name"], "written": str(out.relative_to(ROOT))}))
    return out


# --- what the fine-tuning benchmarks share: the peers' versions, the data, memory ----------------


def package_version(name: str) -> str | None:
    """The installed version of ``name``, or None when it is not installed (the rows that
    need it have failed already and say why)."""
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def shared_data_dir(given: Path | None) -> Path:
    """The public data: ``given``, else $SCRATCHGPT_SHARED_DATA, else ../shared/data."""
    if given is not None:
        return given
    env = os.environ.get("SCRATCHGPT_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def rss_peak_mb() -> float:
    """This process's peak resident set size so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_rss_peak() -> bool:
    """Reset the process's peak RSS to its current RSS (Linux >= 4.0); False if refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def current_rss_mb() -> float | None:
    """This process's resident set size now (None where /proc is not there)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else None
