"""Reading GPT-2 from disk: a Hugging Face directory (safetensors) or OpenAI's TensorFlow release.

Both sources come out the same way: a config (:class:`~scratchgpt.config.GPTConfig`) and the
tensors under Hugging Face's names (:class:`LazyTensors`), which the one mapping table in
:mod:`.mapping` turns into ours. Tensors are read on demand, memory-mapped where the format
allows, so a converter holds one tensor at a time and never the whole file twice.

OpenAI's release (Radford et al. 2019; the ``openai/gpt-2`` repository's ``download_model.py``)
is a TensorFlow checkpoint (``model.ckpt.*`` + ``hparams.json``); reading it needs TensorFlow,
the ``tf`` extra. Its variable names are rewritten into Hugging Face's (:func:`openai_to_hf_name`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ..config import GPTConfig
from ..errors import CheckpointError, missing_extra
from .mapping import HF_CONFIG, HF_INDEX, HF_WEIGHTS, config_from_hf

OPENAI_HPARAMS = "hparams.json"


def read_json(path: Path) -> Any:
    """The JSON in ``path``; a file that is not valid JSON is reported as corrupt, with where.

    A truncated download or an edit gone wrong should say which file to replace, not that the
    directory is of the wrong kind.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(
            f"{path} is corrupt: not UTF-8 text (byte {exc.start}); replace it with an intact "
            "copy (download or export the model again)"
        ) from exc
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{path} is corrupt: not valid JSON ({exc.msg} at line {exc.lineno} column "
            f"{exc.colno}); replace it with an intact copy (download or export the model again)"
        ) from exc


def read_hf_config(directory: Path) -> GPTConfig:
    """Our config from the ``config.json`` of a Hugging Face GPT-2 directory."""
    path = directory / HF_CONFIG
    data = read_json(path)
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path} is corrupt: expected a JSON object of GPT-2 settings, found "
            f"{type(data).__name__}"
        )
    return config_from_hf(data, source=str(path))


def config_from_openai(directory: Path) -> GPTConfig:
    """OpenAI's hparams.json: n_vocab, n_ctx, n_embd, n_head, n_layer (the rest is GPT-2's)."""
    path = directory / OPENAI_HPARAMS
    hp = read_json(path)
    try:
        return GPTConfig(
            vocab_size=int(hp["n_vocab"]),
            context_length=int(hp["n_ctx"]),
            emb_dim=int(hp["n_embd"]),
            n_heads=int(hp["n_head"]),
            n_layers=int(hp["n_layer"]),
            drop_rate=0.1,
            qkv_bias=True,
            tie_weights=True,
            ln_eps=1e-5,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not OpenAI's GPT-2 hparams.json ({exc})") from exc


class LazyTensors(Mapping[str, torch.Tensor]):
    """Named tensors, each read from its file only when looked up (memory-mapped for
    safetensors), so a converter holds one tensor at a time, never the whole file twice."""

    def __init__(self, readers: dict[str, Callable[[], torch.Tensor]]) -> None:
        self._readers = readers

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._readers[name]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._readers)

    def __len__(self) -> int:
        return len(self._readers)


def safetensors_weights(directory: Path) -> LazyTensors:
    """The tensors of a Hugging Face directory: model.safetensors, or the shards of an index."""
    if (directory / HF_WEIGHTS).is_file():
        files = [directory / HF_WEIGHTS]
    elif (directory / HF_INDEX).is_file():
        index = read_json(directory / HF_INDEX)
        try:
            files = [directory / f for f in sorted(set(index["weight_map"].values()))]
        except (KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{directory / HF_INDEX}: not a safetensors index") from exc
    elif any((directory / f).is_file() for f in ("pytorch_model.bin", "model.pt")):
        raise CheckpointError(
            f"{directory} holds its weights only as a pickle (pytorch_model.bin), which "
            "scratchgpt never loads since unpickling a file can run code. Convert it to "
            "model.safetensors (transformers: model.save_pretrained(dir)), or download the "
            "hub's safetensors copy"
        )
    else:
        raise CheckpointError(f"{directory}: no {HF_WEIGHTS} next to {HF_CONFIG}")
    readers: dict[str, Callable[[], torch.Tensor]] = {}
    for file in files:
        try:
            names = safe_open(str(file), framework="pt").keys()
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from exc
        readers.update((name, partial(_read_mapped, file, name)) for name in names)
    return LazyTensors(readers)


def _read_mapped(file: Path, name: str) -> torch.Tensor:
    """One tensor through its own memory map of ``file``.

    A safe_open handle maps the whole file once and keeps every page read through it until
    the handle goes; a handle per tensor lets each page go as soon as its tensor has been
    converted, so a file of transposed weights never sits in memory beside the model.
    """
    return safe_open(str(file), framework="pt").get_tensor(name)


# OpenAI's names -> transformers' (which our table speaks): model/h3/attn/c_attn/w ->
# h.3.attn.c_attn.weight, model/ln_f/g -> ln_f.weight, model/wte -> wte.weight.
_OPENAI_LEAF = {"w": "weight", "g": "weight", "b": "bias"}
_OPENAI_NAME = re.compile(r"model/(?:h(?P<block>\d+)/)?(?P<path>.+?)(?:/(?P<leaf>[wgb]))?")


def openai_to_hf_name(name: str) -> str:
    """Hugging Face's name for one of OpenAI's TensorFlow variable names (itself if unknown)."""
    m = _OPENAI_NAME.fullmatch(name)
    if m is None:
        return name
    parts = [] if m["block"] is None else ["h", m["block"]]
    parts += m["path"].split("/")
    parts.append(_OPENAI_LEAF[m["leaf"]] if m["leaf"] else "weight")  # wte, wpe: no leaf
    return ".".join(parts)


def _read_openai_tensor(reader: Any, name: str) -> torch.Tensor:
    tensor = torch.from_numpy(reader.get_tensor(name))
    if name.endswith("/w") and tensor.dim() == 3 and tensor.size(0) == 1:
        # OpenAI's conv1d weights keep a kernel-width axis of 1: (1, in, out) -> (in, out).
        tensor = tensor[0]
    return tensor


def _import_tensorflow(directory: Path) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise missing_extra(
            "tensorflow-cpu",
            "tf",
            f"{directory} is OpenAI's TensorFlow release of GPT-2 (the same weights load without "
            "it from the Hugging Face hub: scratchgpt download gpt2); reading it",
        ) from exc
    return tf


def openai_weights(directory: Path) -> LazyTensors:
    """OpenAI's TensorFlow checkpoint (model.ckpt.*) seen under Hugging Face's names."""
    tf = _import_tensorflow(directory)
    prefix = tf.train.latest_checkpoint(str(directory))  # from the "checkpoint" file
    if prefix is None and (directory / "model.ckpt.index").is_file():
        prefix = str(directory / "model.ckpt")
    if prefix is None:
        raise CheckpointError(
            f"{directory}: no TensorFlow checkpoint (expected the files checkpoint, "
            "model.ckpt.index and model.ckpt.data-* of OpenAI's release)"
        )
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = reader.get_variable_to_shape_map()
    except Exception as exc:  # TensorFlow raises its own error types
        raise CheckpointError(f"{prefix}: unreadable TensorFlow checkpoint ({exc})") from exc
    return LazyTensors(
        {openai_to_hf_name(n): partial(_read_openai_tensor, reader, n) for n in names}
    )
