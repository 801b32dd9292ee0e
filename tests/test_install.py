"""install.sh picks the PyTorch build that fits the machine (run against stub programs)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")


def _stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _install(tmp_path: Path, *, torch_installed: bool, gpu: bool, system: str, extras=()) -> list:
    """Run install.sh with a fake python (logs its arguments), nvidia-smi and uname."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    _stub(
        bin_dir,
        "fakepython",
        f'if [ "$1" = "-c" ]; then exit {0 if torch_installed else 1}; fi\necho "$@" >> "{log}"',
    )
    if gpu:
        _stub(bin_dir, "nvidia-smi", "exit 0")
    _stub(bin_dir, "uname", f"echo {system}")
    for tool in ("dirname", "echo", "cat"):  # what the script needs besides the stubs
        if shutil.which(tool):
            os.symlink(shutil.which(tool), bin_dir / tool)
    env = {"PATH": str(bin_dir), "PYTHON": "fakepython", "HOME": str(tmp_path)}
    result = subprocess.run(
        ["/bin/sh", str(ROOT / "install.sh"), *extras],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "install.sh:" in result.stdout
    return log.read_text().splitlines() if log.exists() else []


def test_a_machine_without_a_gpu_gets_the_cpu_build(tmp_path):
    calls = _install(tmp_path, torch_installed=False, gpu=False, system="Linux")
    assert calls == [
        "-m pip install torch --index-url https://download.pytorch.org/whl/cpu",
        "-m pip install -e .",
    ]


def test_an_nvidia_machine_gets_the_cuda_build(tmp_path):
    calls = _install(tmp_path, torch_installed=False, gpu=True, system="Linux", extras=["plot"])
    assert calls == ["-m pip install torch", "-m pip install -e .[plot]"]


def test_macos_gets_the_default_build(tmp_path):
    calls = _install(tmp_path, torch_installed=False, gpu=False, system="Darwin")
    assert calls == ["-m pip install torch", "-m pip install -e ."]


def test_an_installed_torch_is_kept(tmp_path):
    calls = _install(tmp_path, torch_installed=True, gpu=False, system="Linux")
    assert calls == ["-m pip install -e ."]
