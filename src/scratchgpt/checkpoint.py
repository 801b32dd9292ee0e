"""Checkpoints: a directory with the model config (JSON), the tokenizer and the weights.

::

    my-model/
      config.json        {"format": "scratchgpt", "version": 1, "model": {...}, "metadata": {...}}
      tokenizer.json     the exact tokenizer (+ its side files, e.g. gpt2.tiktoken)
      model.safetensors  the weights

Safetensors and JSON only: loading a checkpoint never unpickles, so a file from a stranger
cannot run code. The model is rebuilt from the saved config, never from code defaults.
A save is atomic: it is written beside the target and renamed into place, so a crash leaves
either the previous checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file, save_model

from .config import GPTConfig
from .errors import CheckpointError, ConfigError, TokenizerError
from .files import atomic_directory
from .model import GPTModel
from .quantization import is_quantized
from .tokenizers import Tokenizer, load_tokenizer

FORMAT = "scratchgpt"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

log = logging.getLogger(__name__)


def save_checkpoint(
    directory: str | Path,
    model: GPTModel,
    tokenizer: Tokenizer,
    *,
    metadata: dict[str, Any] | None = None,
    weights: dict[str, torch.Tensor] | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``model`` (the raw one: not compiled, not DDP-wrapped) and ``tokenizer``.

    ``metadata`` is any JSON-ready dict (step, losses, training config) stored in config.json.
    ``weights`` replaces ``model.state_dict()`` (a sharded model's gathered full state);
    ``extra(tmp)`` writes more files into the checkpoint before it is moved into place (the
    trainer's optimiser state), so they appear atomically with the weights. Returns the
    checkpoint directory.
    """
    if not isinstance(model, GPTModel):
        raise TypeError(
            f"save_checkpoint expects the raw GPTModel, got {type(model).__name__}: pass the "
            "model you built, not its torch.compile / DDP wrapper (whose keys carry prefixes)"
        )
    if weights is None and is_quantized(model):
        raise CheckpointError(
            "the model's weights are quantized (scratchgpt.quantization), which is for inference "
            "only: save the float model, and quantize it again after loading"
        )
    if tokenizer.vocab_size > model.cfg.vocab_size:
        raise CheckpointError(
            f"the tokenizer has {tokenizer.vocab_size} ids but the model only "
            f"{model.cfg.vocab_size}: they do not belong together"
        )
    info = {
        "format": FORMAT,
        "version": VERSION,
        "model": model.cfg.to_dict(),
        "metadata": metadata or {},
    }

    def write_weights(file: Path) -> None:
        # save_model stores a tied weight once; build_model restores the tie on loading.
        if weights is None:
            save_model(model, str(file), metadata={"format": FORMAT})
        else:
            tied = "out_head.weight" if model.cfg.tie_weights else None  # stored once, too
            plain = {k: v.detach().contiguous() for k, v in weights.items() if k != tied}
            save_file(plain, str(file), metadata={"format": FORMAT})

    return write_model_directory(
        directory,
        write_weights,
        tokenizer=tokenizer,
        info=info,
        extra=extra,
        replaceable=is_checkpoint,
        what="a scratchgpt checkpoint",
    )


def tensors_writer(state: Mapping[str, torch.Tensor], format: str) -> Callable[[Path], None]:
    """The ``write_weights`` of :func:`write_model_directory` for a plain state dict: every
    tensor detached, on the CPU and contiguous, in one safetensors file tagged ``format``."""

    def write(file: Path) -> None:
        plain = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        save_file(plain, str(file), metadata={"format": format})

    return write


def write_model_directory(
    directory: str | Path,
    write_weights: Callable[[Path], None],
    *,
    tokenizer: Tokenizer,
    info: Mapping[str, Any],
    extra: Callable[[Path], None] | None,
    replaceable: Callable[[Path], bool],
    what: str,
) -> Path:
    """The layout every saved model shares (a GPT checkpoint, a classifier): the weights
    (``write_weights(path)``), the tokenizer, ``extra(tmp)``'s files, and config.json last,
    all moved into place at once, so a directory with a config.json is always complete."""

    def write(tmp: Path) -> None:
        write_weights(tmp / WEIGHTS_FILE)
        tokenizer.save(tmp)
        if extra is not None:
            extra(tmp)
        (tmp / CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    return atomic_directory(directory, write, replaceable=replaceable, what=what)


def is_checkpoint(path: str | Path, *, format: str | None = FORMAT) -> bool:
    """True if ``path`` is a directory holding a readable config.json of checkpoint format
    ``format`` ("scratchgpt", a GPT, by default; None: any format, a classifier's too)."""
    try:
        info = json.loads((Path(path) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or not isinstance(info.get("format"), str):
        return False
    return format is None or info["format"] == format


def corrupt_config(directory: str | Path) -> str | None:
    """Why ``directory``'s config.json is corrupt, or None if it is fine or absent.

    Corrupt means there but not a JSON mapping (a disk error, a hand edit gone wrong): a
    different message from "not a checkpoint", which would send the reader looking for the
    wrong mistake. A valid mapping of another format (a Hugging Face config) is not corrupt.
    """
    file = Path(directory) / CONFIG_FILE
    try:
        text = file.read_bytes().decode("utf-8")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return f"unreadable: {exc}"
    try:
        info = json.loads(text)
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    return None if isinstance(info, dict) else f"a JSON {type(info).__name__}, not a mapping"


def corrupt_error(directory: Path, reason: str) -> CheckpointError:
    """The error for a checkpoint whose config.json is corrupt (see :func:`corrupt_config`)."""
    return CheckpointError(
        f"{directory / CONFIG_FILE} is corrupt ({reason}): restore the file, or delete "
        f"{directory} (a run then falls back to its previous checkpoint)"
    )


STEP_PREFIX = "step-"


def run_checkpoints(
    run_dir: str | Path, *, format: str | None = FORMAT, strict: bool = False
) -> list[tuple[int, Path]]:
    """The complete checkpoints of a training run, ``(step, path)`` oldest first.

    A run writes ``RUN/checkpoints/step-00000100`` and so on; a save cut short leaves only a
    hidden temporary directory, which is never listed here. ``format`` as for
    :func:`is_checkpoint`. A step directory whose config.json is corrupt is skipped with a
    warning, or with ``strict`` (resuming, which would write over it) is an error.
    """
    root = Path(run_dir) / "checkpoints"
    found = []
    if root.is_dir():
        for path in root.glob(f"{STEP_PREFIX}*"):
            suffix = path.name[len(STEP_PREFIX) :]
            if not suffix.isdigit():
                continue
            if is_checkpoint(path, format=format):
                found.append((int(suffix), path))
            elif (reason := corrupt_config(path)) is not None:
                if strict:
                    raise corrupt_error(path, reason)
                log.warning("skipping %s: %s is corrupt (%s)", path, CONFIG_FILE, reason)
    return sorted(found)


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint directory for ``path``: the checkpoint itself or a run directory.

    For a run directory this is its latest complete checkpoint (``checkpoints/step-N``, or
    ``checkpoint/`` in runs made by older versions).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    for candidate in (path, path / "checkpoint"):
        if is_checkpoint(candidate):
            return candidate
    steps = run_checkpoints(path)
    if steps:
        return steps[-1][1]
    for candidate in (path, path / "checkpoint"):
        reason = corrupt_config(candidate)
        if reason is not None:
            raise corrupt_error(candidate, reason)
    run_checkpoints(path, strict=True)  # a run whose only checkpoints are corrupt says so
    raise CheckpointError(
        f"{str(path)!r} is not a scratchgpt checkpoint: expected a directory with {CONFIG_FILE}, "
        f"{WEIGHTS_FILE} and tokenizer.json (as written by save_checkpoint or scratchgpt "
        "train), or a run directory with checkpoints in checkpoints/"
    )


def read_checkpoint_info(path: str | Path) -> tuple[GPTConfig, dict[str, Any]]:
    """The model config and the metadata of a checkpoint, without loading weights."""
    directory = resolve_checkpoint(path)
    info = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    if info.get("version") != VERSION:
        raise CheckpointError(
            f"{directory}: checkpoint format version {info.get('version')!r}; this scratchgpt "
            f"reads version {VERSION}"
        )
    try:
        cfg = GPTConfig.from_dict(info["model"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{directory}/{CONFIG_FILE}: invalid model config: {exc}") from exc
    return cfg, info.get("metadata") or {}


def load_checkpoint(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **overrides: Any,
) -> tuple[GPTModel, Tokenizer]:
    """Rebuild the model and tokenizer saved in ``path`` (a checkpoint or run directory).

    ``overrides`` change config fields that do not alter the weights, e.g.
    ``attn_impl="explicit"`` to run a checkpoint on the textbook attention path. ``dtype``
    casts the floating-point weights (e.g. ``torch.bfloat16``) as they are read.
    """
    directory = resolve_checkpoint(path)
    cfg, _ = read_checkpoint_info(directory)
    if overrides:
        cfg = GPTConfig.from_dict({**cfg.to_dict(), **overrides})
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{directory}: the weights file {WEIGHTS_FILE} is missing")
    try:
        # Converted tensors are copies: read each through its own map, released at once.
        converting = dtype is not None or device is not None
        tensors = safetensors_items([weights], one_map_per_tensor=converting)
        model = build_model(cfg, tensors, dtype=dtype, device=device, source=str(weights))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"{weights}: unreadable or does not fit the config: {exc}") from exc
    try:
        tokenizer = load_tokenizer(directory)
    except TokenizerError as exc:
        raise CheckpointError(f"{directory}: {exc}") from exc
    return model, tokenizer


def safetensors_items(
    files: Iterable[Path], *, one_map_per_tensor: bool = False
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every tensor of the files, memory-mapped: read only when touched.

    With one map per file (the default) the tensors are views of the file: loading copies
    nothing, and pages are read as the model first uses them. A handle keeps every page read
    through it while it lives, so a caller that converts each tensor (to another dtype or
    device) asks for ``one_map_per_tensor``: each source page is released after conversion.
    """
    for file in files:
        handle = safe_open(str(file), framework="pt")
        for name in handle.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
            if one_map_per_tensor:
                yield name, safe_open(str(file), framework="pt").get_tensor(name)
            else:
                yield name, handle.get_tensor(name)


def build_model(
    cfg: GPTConfig,
    tensors: Iterable[tuple[str, torch.Tensor]],
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    source: str,
) -> GPTModel:
    """A GPTModel for ``cfg`` holding ``tensors`` (our parameter names), in eval mode.

    The model is built on the meta device (shapes only: no memory, no random init) and each
    tensor takes its parameter's place (``assign=True``) instead of being copied into a fresh
    one, so loading needs one model's memory, not two: memory-mapped tensors stay on disk
    until used, which is what lets GPT-2 XL load on a laptop. Every name and shape is checked
    against the model; ``source`` names the file in the error messages.
    """
    with torch.device("meta"):
        model = GPTModel(cfg)
    expected = {name: t.shape for name, t in model.state_dict().items()}
    tied = ("tok_emb.weight", "out_head.weight") if cfg.tie_weights else ()
    state: dict[str, torch.Tensor] = {}
    unexpected = []
    for name, tensor in tensors:
        if name not in expected:
            unexpected.append(name)
            continue
        if tensor.shape != expected[name]:
            raise CheckpointError(
                f"{source}: {name} has shape {tuple(tensor.shape)} but the config "
                f"({_shape_summary(cfg)}) needs {tuple(expected[name])}: the file does not "
                "fit the config"
            )
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[name] = tensor.to(device) if device is not None else tensor
    if tied:
        # A tied weight is stored once, under either name: both names get the one tensor.
        present = [state[n] for n in tied if n in state]
        if len(present) == 2 and not torch.equal(present[0], present[1]):
            raise CheckpointError(
                f"{source}: the config ties the output head to the token embedding but "
                "the file holds two different matrices; set tie_weights to false"
            )
        if present:
            state.update(dict.fromkeys(tied, present[0]))
    missing = sorted(set(expected) - set(state))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match its config: missing {missing}, unexpected "
            f"{sorted(unexpected)}"
        )
    model.load_state_dict(state, strict=True, assign=True)
    if cfg.tie_weights:
        model.out_head.weight = model.tok_emb.weight  # assign=True made two Parameters
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:  # a tensor the model makes itself was never materialised: a bug, not bad input
        raise RuntimeError(f"build_model left {left} on the meta device")
    return model.eval()


def _shape_summary(cfg: GPTConfig) -> str:
    return (
        f"vocab_size={cfg.vocab_size}, context_length={cfg.context_length}, "
        f"emb_dim={cfg.emb_dim}, n_layers={cfg.n_layers}, qkv_bias={cfg.qkv_bias}"
    )


# Where `scratchgpt train` puts runs, and so where `generate` looks for the latest one.
RUNS_DIR = Path("runs")


def latest_run(root: str | Path = RUNS_DIR) -> Path:
    """The most recently written GPT checkpoint under ``root`` (what `generate` uses by
    default); runs of other tasks (classifiers) are not candidates."""
    root = Path(root)
    found: list[Path] = []
    if root.is_dir():
        for run in root.iterdir():
            steps = run_checkpoints(run)
            if steps:
                found.append(steps[-1][1])
            elif is_checkpoint(run / "checkpoint"):
                found.append(run / "checkpoint")
    if not found:
        raise CheckpointError(
            f"no trained run found in {str(root)!r}: run `scratchgpt train` first, or pass "
            "--checkpoint DIR"
        )
    return max(found, key=lambda p: (p / "config.json").stat().st_mtime)
