"""Int8 weights for inference: a quarter of fp32's bytes for a decode step to read.

At batch 1 a decode step reads every weight once and does little arithmetic with each, so its
speed is the memory bandwidth divided by the bytes of the weights. Storing the matrices of the
Linear layers as int8, one scale per output row, cuts those bytes to a quarter of fp32 and half
of bf16; activations stay bf16 and each matrix product dequantizes its weights as it reads
them ("weight-only" quantization, as in gpt-fast). The rounding error is small next to the
weights' spread, and the perplexity cost is measured in ``bench/generate.py``.

The kernels come from torchao (the ``quant`` extra), PyTorch's own quantization library; a
compiled decode step (:func:`scratchgpt.generation.compile_decode_step`) is where it pays, as
inductor fuses the dequantization into the product. Quantizing is a change of weight format
on the same :class:`~scratchgpt.model.GPTModel`, for inference only: train and save the
float model, quantize after loading.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
from torch import nn

from .errors import ConfigError, missing_extra
from .model import GPTModel

QUANTIZATIONS = ("int8",)


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """Silence the warnings torchao logs while importing on machines without its CUDA-only
    libraries or triton: they concern kernels a CPU run never calls."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def quantize(model: GPTModel, method: str = "int8") -> GPTModel:
    """Store ``model``'s Linear weights (the head included) as int8, in place; returns it.

    The rest of the model is cast to bf16, which is what the int8 kernels multiply with (with
    fp32 activations the products fall back to slow paths). A tied head gets its own int8
    copy; the token embedding keeps its bf16 rows, as a lookup reads only one of them.
    """
    if method not in QUANTIZATIONS:
        raise ConfigError(f"quantization {method!r}: choose one of {', '.join(QUANTIZATIONS)}")
    if is_quantized(model):
        raise ConfigError("the model is already quantized: quantize the float model once")
    try:
        with _quiet_import():
            from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError as exc:
        raise missing_extra("torchao", "quant", "int8 quantization") from exc
    model.to(torch.bfloat16)
    # quantize_ gives each Linear a new int8 weight; a tied embedding keeps the float tensor.
    quantize_(model, Int8WeightOnlyConfig())
    return model


def is_quantized(model: nn.Module) -> bool:
    """Whether any weight is held in a quantized format (a tensor subclass, not a plain one)."""
    return any(type(p.data) is not torch.Tensor for p in model.parameters())
