import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import scratchgpt

ROOT = Path(__file__).resolve().parents[1]


def test_public_api_resolves():
    for name in scratchgpt.__all__:
        assert getattr(scratchgpt, name) is not None
    assert set(scratchgpt.__all__) == set(scratchgpt._EXPORTS)


def test_import_is_light():
    code = "import sys, scratchgpt; print(any(m in sys.modules for m in ('torch', 'transformers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_pickle_in_the_package():
    for path in (ROOT / "src" / "scratchgpt").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import pickle" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line}"


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        message = "ruff is not installed (pip install -e '.[test]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [ruff, "check", "src", "tests", "bench"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_public_api_is_listed_once_and_typed():
    """One import block is the list; every public function is annotated, and its options
    (every parameter with a default after the first) are keyword-only."""
    import inspect

    source = (ROOT / "src" / "scratchgpt" / "__init__.py").read_text(encoding="utf-8")
    for name in scratchgpt.__all__:
        assert source.count(f"{name} as {name},") == 1, name
        obj = getattr(scratchgpt, name)
        if not inspect.isfunction(obj):
            continue
        params = list(inspect.signature(obj).parameters.values())
        assert all(p.annotation is not inspect.Parameter.empty for p in params), name
        assert inspect.signature(obj).return_annotation is not inspect.Signature.empty, name
        optional_positional = [
            p
            for p in params
            if p.default is not inspect.Parameter.empty
            and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        ]
        # the subject of the call may be positional (load_model(path)); options may not
        assert len(optional_positional) <= 1, f"{name}: options must be keyword-only"
