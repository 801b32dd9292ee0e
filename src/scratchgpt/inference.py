"""Load a model to run it: a checkpoint, a run's latest one, or pretrained GPT-2, in one call.

``generate``, ``eval`` and the plots all start the same way: find the weights (a checkpoint
or run directory, ``--init-from`` a GPT-2 name or directory, or by default the latest run),
put them on a device in a number format, optionally crop the context, quantize, or swap the
tokenizer. This is that sequence, once, in a fixed order: the format is chosen as the weights
load (a bf16 copy never exists in fp32 first), the crop happens before quantizing (the
position table is not a Linear), and a replacement tokenizer is checked against the vocabulary.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from .device import pick_device
from .errors import CheckpointError, ConfigError
from .model import GPTModel
from .templates import Template
from .tokenizers import Tokenizer, get_tokenizer

log = logging.getLogger(__name__)

# Weight formats for inference, by the names of their torch dtypes.
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")


def inference_dtype(name: str | None) -> torch.dtype | None:
    """The torch dtype called ``name`` ("float32", "bfloat16", "float16"); None keeps the
    format the weights were saved in."""
    if name is None:
        return None
    if name not in DTYPES:
        raise ConfigError(f"dtype={name!r}: must be one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def load_model(
    checkpoint: str | Path | None = None,
    *,
    init_from: str | Path | None = None,
    device: str | torch.device = "auto",
    dtype: str | None = None,
    quantize: str | None = None,
    context_length: int | None = None,
    tokenizer: str | Path | None = None,
) -> tuple[GPTModel, Tokenizer | None]:
    """The model and tokenizer to run: ``init_from`` pretrained weights, else ``checkpoint``
    (a checkpoint or run directory), else the latest run under ``runs/``.

    ``dtype`` casts the weights as they load; ``quantize`` ("int8") makes the Linear weights
    int8 with bf16 activations; ``context_length`` crops the position table; ``tokenizer``
    replaces the saved one (its ids must fit the model's vocabulary). The tokenizer is None
    only for a Hugging Face directory with no tokenizer files and a non-GPT-2 vocabulary.
    """
    from .checkpoint import latest_run
    from .model import crop_context
    from .pretrained import load_pretrained

    if init_from is not None and checkpoint is not None:
        raise ConfigError("give either --checkpoint or --init-from, not both")
    if quantize is not None and dtype not in (None, "bfloat16"):
        raise ConfigError(
            f"--quantize {quantize} runs with bfloat16 activations: drop --dtype {dtype}"
        )
    target = pick_device(device) if isinstance(device, str) else device
    weights = inference_dtype(dtype)
    tok: Tokenizer | None
    if init_from is not None:
        # The tokenizer goes in with the weights: a GPT-2 directory may lack its own.
        model, tok = load_pretrained(init_from, device=target, dtype=weights, tokenizer=tokenizer)
        source: str | Path = init_from
    else:
        source = checkpoint if checkpoint is not None else latest_run()
        model, tok = _load_saved(source, device=target, dtype=weights)
        if tokenizer is not None:
            tok = get_tokenizer(tokenizer)
            if tok.vocab_size > model.cfg.vocab_size:
                raise ConfigError(
                    f"--tokenizer {tokenizer}: {tok.vocab_size} ids, more than the model's "
                    f"vocab_size={model.cfg.vocab_size}"
                )
    log.info("loaded %s", source)
    if context_length is not None:
        crop_context(model, context_length)
    if quantize is not None:
        from .quantization import quantize as quantize_model

        quantize_model(model, quantize)
    return model, tok


def _load_saved(
    source: str | Path, *, device: torch.device, dtype: torch.dtype | None
) -> tuple[GPTModel, Tokenizer]:
    """A checkpoint or run, or a LoRA adapter (or run) put on its base and merged."""
    from .adapters import adapter_task, load_adapter_model
    from .checkpoint import load_checkpoint

    task = adapter_task(source)
    if task is None:
        return load_checkpoint(source, device=device, dtype=dtype)
    if task == "classifier":
        raise ConfigError(
            f"{source} is a classifier's LoRA adapter: use scratchgpt classify predict "
            f"--checkpoint {source}"
        )
    model, tok, _ = load_adapter_model(source, merge=True, device=device)
    return (model if dtype is None else model.to(dtype)), tok


def saved_template(checkpoint: str | Path) -> Template | None:
    """The prompt template stored with a checkpoint (``metadata.template`` in its config.json),
    or None when it has none.

    ``checkpoint`` is a checkpoint or LoRA adapter directory, or a run directory (then its
    latest checkpoint, of any format). Only JSON is read, so a command can settle which
    template it uses, and refuse a missing one, before paying for loading the weights. A
    directory that is no scratchgpt checkpoint at all (a Hugging Face model) has none.
    """
    from .checkpoint import (
        CONFIG_FILE,
        corrupt_config,
        corrupt_error,
        is_checkpoint,
        run_checkpoints,
    )

    path = Path(checkpoint)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    directory: Path | None = None
    for candidate in (path, path / "checkpoint"):  # checkpoint/: runs of older versions
        if is_checkpoint(candidate, format=None):
            directory = candidate
            break
        if (reason := corrupt_config(candidate)) is not None:
            raise corrupt_error(candidate, reason)
    if directory is None:
        steps = run_checkpoints(path, format=None)
        if not steps:
            return None
        directory = steps[-1][1]
    file = directory / CONFIG_FILE
    info = json.loads(file.read_text(encoding="utf-8"))  # is_checkpoint read it already
    metadata = info.get("metadata")
    data = metadata.get("template") if isinstance(metadata, dict) else None
    if data is None:
        return None
    return Template.from_dict(data, source=f"{file} (metadata.template)")
