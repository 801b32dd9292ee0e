"""Loading GPT-2 (or a model to fine-tune) into our model, with the tokenizer that belongs to it.

:func:`load_gpt2` ties the pieces together: :func:`~.hub.locate` finds the directory (or
downloads it), :mod:`.weights` reads the config and tensors, :mod:`.mapping` renames them,
and :func:`~scratchgpt.checkpoint.build_model` builds the model on the meta device and moves
each tensor into place. :func:`load_pretrained` also accepts scratchgpt's own checkpoints.

The tokenizer is the directory's own; a Hugging Face directory without one (as
``save_pretrained`` of a model alone writes it) gets GPT-2's when its vocabulary is GPT-2's
50,257 ids, and none otherwise: the model then takes ids and gives logits, and the caller
must bring a tokenizer (``tokenizer=...``) to work with text.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import build_model, is_checkpoint, load_checkpoint, run_checkpoints
from ..config import GPTConfig
from ..errors import CheckpointError, ConfigError, TokenizerError
from ..model import GPTModel, crop_context
from ..tokenizers import TiktokenTokenizer, Tokenizer, get_tokenizer
from ..tokenizers.base import TOKENIZER_FILE, load_tokenizer
from .hub import locate
from .mapping import convert_from_hf
from .tokenizer_export import GPT2_TOKENIZER_FILES, HF_TOKENIZER, SCRATCHGPT_TOKENIZER
from .weights import config_from_openai, openai_weights, read_hf_config, safetensors_weights

log = logging.getLogger(__name__)

GPT2_VOCAB_SIZE = 50_257  # 256 bytes + 50,000 merges + <|endoftext|>


def load_gpt2(
    name_or_path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    tokenizer: str | Path | Tokenizer | None = None,
    **overrides: Any,
) -> tuple[GPTModel, Tokenizer | None]:
    """GPT-2 and its tokenizer, from the hub, a Hugging Face directory or OpenAI's release.

    ``name_or_path`` is one of :data:`GPT2_NAMES` ("gpt2" ... "gpt2-xl", or "gpt2-124M" ...
    "gpt2-1558M"), fetched through the hub cache, or a directory: Hugging Face's layout
    (config.json + model.safetensors, as ``save_pretrained`` or :func:`export_hf` write it) or
    OpenAI's (hparams.json + model.ckpt.*, which needs the ``tf`` extra). An existing
    directory wins over a name. The weights are read memory-mapped into a model built on the
    meta device, cast to ``dtype`` and moved to ``device`` one tensor at a time.

    The tokenizer is the directory's: ours as exported (scratchgpt_tokenizer.json), GPT-2's
    BPE from vocab.json + merges.txt (or OpenAI's encoder.json + vocab.bpe, the same data),
    or an older export's scratchgpt tokenizer.json. Without any, it is GPT-2's (tiktoken's
    "gpt2") for a 50,257-id vocabulary, else **None** with a warning: ids in, logits out
    still work. ``tokenizer`` replaces it. ``overrides`` may set ``context_length`` (a crop,
    see :func:`~scratchgpt.model.crop_context`), ``drop_rate`` and ``attn_impl``; the
    weights fix everything else.
    """
    directory, layout = locate(name_or_path)
    if layout == "openai":
        cfg, weights = config_from_openai(directory), openai_weights(directory)
    else:
        cfg, weights = read_hf_config(directory), safetensors_weights(directory)
    context_length = overrides.pop("context_length", None)
    cfg = _with_overrides(cfg, overrides)
    tensors = convert_from_hf(weights, cfg, source=str(directory))
    model = build_model(cfg, tensors, dtype=dtype, device=device, source=str(directory))
    if context_length is not None:
        crop_context(model, context_length)
    tok = _tokenizer_for(directory, tokenizer, model.cfg)
    log.info(
        "loaded GPT-2 from %s: %d layers x %d, context %d, %s parameters",
        directory,
        cfg.n_layers,
        cfg.emb_dim,
        model.cfg.context_length,
        f"{sum(p.numel() for p in model.parameters()):,}",
    )
    return model, tok


def load_pretrained(
    name_or_path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    tokenizer: str | Path | Tokenizer | None = None,
    **overrides: Any,
) -> tuple[GPTModel, Tokenizer | None]:
    """A model to start from: a scratchgpt checkpoint (or run directory), or any GPT-2.

    What ``--init-from`` accepts: fine-tuning can continue from an earlier fine-tune as well
    as from OpenAI's weights. Options as in :func:`load_gpt2`; the tokenizer is None only
    for a GPT-2 directory without tokenizer files and a vocabulary that is not GPT-2's (a
    checkpoint always carries its own).
    """
    path = Path(name_or_path)
    if path.is_dir() and _is_adapter(path):
        raise CheckpointError(
            f"{path} is a LoRA adapter: fine-tune from base + adapter by merging them first "
            f"(scratchgpt lora merge {path} --out DIR, then --init-from DIR)"
        )
    if path.is_dir() and (
        is_checkpoint(path) or is_checkpoint(path / "checkpoint") or run_checkpoints(path)
    ):
        context_length = overrides.pop("context_length", None)
        model, tok = load_checkpoint(path, device=device, dtype=dtype, **overrides)
        if context_length is not None:
            crop_context(model, context_length)
        if tokenizer is not None:
            tok = _checked(get_tokenizer(tokenizer), model.cfg, source=str(tokenizer))
        return model, tok
    return load_gpt2(name_or_path, dtype=dtype, device=device, tokenizer=tokenizer, **overrides)


def _with_overrides(cfg: GPTConfig, overrides: dict[str, Any]) -> GPTConfig:
    allowed = ("drop_rate", "attn_impl")
    bad = sorted(k for k in overrides if k not in allowed)
    if bad:
        raise ConfigError(
            f"cannot override {', '.join(bad)} of a pretrained model: its weights fix the "
            f"shape; only context_length (a crop), {' and '.join(allowed)} can change"
        )
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def _tokenizer_for(
    directory: Path, tokenizer: str | Path | Tokenizer | None, cfg: GPTConfig
) -> Tokenizer | None:
    if tokenizer is not None:
        tok = _tokenizer_in(Path(tokenizer)) if isinstance(tokenizer, (str, Path)) else None
        return _checked(tok or get_tokenizer(tokenizer), cfg, source=str(tokenizer))
    tok = _tokenizer_in(directory)
    if tok is not None:
        return _checked(tok, cfg, source=str(directory))
    unread = " (its tokenizer.json is not one scratchgpt reads)"
    unread = unread if (directory / HF_TOKENIZER).is_file() else ""
    if cfg.vocab_size == GPT2_VOCAB_SIZE:
        # save_pretrained of a GPT2LMHeadModel alone: the vocabulary says whose it is.
        log.info("%s has no tokenizer files%s: using GPT-2's for its 50,257 ids", directory, unread)
        try:
            return TiktokenTokenizer.from_name("gpt2")
        except TokenizerError as exc:
            raise CheckpointError(
                f"{directory} has no tokenizer files and tiktoken cannot load GPT-2's: copy "
                "GPT-2's vocab.json + merges.txt there, pass tokenizer=DIR (--tokenizer DIR), "
                "or set TIKTOKEN_CACHE_DIR to a cache that holds it"
            ) from exc
    log.warning(
        "%s has no tokenizer files%s and its %d-id vocabulary is not GPT-2's: loaded without "
        "a tokenizer (ids in, logits out); pass tokenizer=... (--tokenizer) for text",
        directory,
        unread,
        cfg.vocab_size,
    )
    return None


def _tokenizer_in(directory: Path) -> Tokenizer | None:
    """The tokenizer a model directory holds: ours as exported, GPT-2's two files under either
    pair of names (as tiktoken, the fast path), or an older export's scratchgpt tokenizer.json;
    None if none of them."""
    if not directory.is_dir():
        return None
    if (directory / SCRATCHGPT_TOKENIZER).is_file():
        try:
            return load_tokenizer(directory / SCRATCHGPT_TOKENIZER)
        except TokenizerError as exc:
            raise CheckpointError(f"{directory}: {exc}") from exc
    for vocab, merges in GPT2_TOKENIZER_FILES:
        if (directory / vocab).is_file() and (directory / merges).is_file():
            try:
                return TiktokenTokenizer.from_gpt2_files(directory / vocab, directory / merges)
            except TokenizerError as exc:
                raise CheckpointError(f"{directory}: {exc}") from exc
    legacy = directory / TOKENIZER_FILE
    if legacy.is_file() and _is_scratchgpt_tokenizer(legacy):
        return load_tokenizer(directory)
    return None


def _is_scratchgpt_tokenizer(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("type") in Tokenizer._registry


def _checked(tok: Tokenizer, cfg: GPTConfig, *, source: str) -> Tokenizer:
    if tok.vocab_size > cfg.vocab_size:
        raise CheckpointError(
            f"{source}: the tokenizer has {tok.vocab_size} ids but the model only "
            f"{cfg.vocab_size}: they do not belong together"
        )
    return tok


def _is_adapter(path: Path) -> bool:
    """A LoRA adapter or LoRA run (format "scratchgpt-lora", see scratchgpt.adapters)."""
    return is_checkpoint(path, format="scratchgpt-lora") or bool(
        run_checkpoints(path, format="scratchgpt-lora")
    )
