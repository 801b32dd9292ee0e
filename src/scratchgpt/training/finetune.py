"""Choosing what a fine-tuning run trains: ``training.trainable`` applied to a GPTModel.

Freezing is ``requires_grad=False``: a frozen weight gets no gradient, the optimiser
(:func:`~.optim.make_optimizer` takes only trainable parameters) keeps no state for it, and it
ends the run bit-identical. LoRA freezes everything and adds small trainable matrices beside
the targeted Linears (:mod:`scratchgpt.lora`), reusing the frozen weights, never copying them.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from ..config import LoRAConfig, parse_trainable
from ..errors import ConfigError
from ..lora import apply_lora
from ..model import GPTModel
from ..tokenizers import Tokenizer

log = logging.getLogger(__name__)


def load_starting_point(
    init_from: str, *, crop: int | None, lora: bool, tokenizer_given: bool = False
) -> tuple[GPTModel, Tokenizer, dict[str, Any] | None]:
    """The pretrained model a fine-tuning run starts from (its context cropped to ``crop``),
    its own tokenizer, and, for a LoRA run, what the adapters record of it
    (:func:`scratchgpt.adapters.base_reference`, taken before anything is added)."""
    from ..adapters import base_reference
    from ..pretrained import load_pretrained

    if tokenizer_given:
        raise ConfigError(
            "data.tokenizer is for a GPT trained from scratch: a pretrained model brings its "
            "own tokenizer"
        )
    model, tokenizer = load_pretrained(
        init_from, **({} if crop is None else {"context_length": crop})
    )
    if tokenizer is None:
        raise ConfigError(f"{init_from} has no tokenizer files: add them first")
    base = base_reference(model, init_from=init_from, context_length=crop) if lora else None
    return model, tokenizer, base


def prepare_for_training(
    model: GPTModel,
    trainable: str,
    lora: LoRAConfig,
    *,
    new_head: bool = False,
    pretrained: bool = True,
) -> str:
    """Freeze what ``trainable`` leaves out (and add LoRA adapters), in place; returns a
    line saying how much trains.

    ``new_head``: the output head was just replaced (a classifier's) and always trains, as
    nothing has learned it yet. ``pretrained``: the weights were loaded (LoRA adapts loaded
    weights; on random ones it is refused). With tied weights (GPT-2's head is its token
    embedding) the LM head trains together with the embedding.
    """
    kind, blocks = parse_trainable(trainable)
    if kind == "lora" and not pretrained:
        raise ConfigError(
            "training.trainable=lora adapts pretrained weights: set model.init_from "
            "(--init-from gpt2, a directory or a run)"
        )
    if kind == "lora":
        apply_lora(
            model, rank=lora.rank, alpha=lora.alpha, dropout=lora.dropout, targets=lora.targets
        )
    elif kind != "all":
        n_layers = len(model.trf_blocks)
        if blocks > n_layers:
            raise ConfigError(
                f"training.trainable={trainable}: the model has only {n_layers} blocks"
            )
        model.requires_grad_(False)
        if kind == "last":
            for block in model.trf_blocks[n_layers - blocks :]:
                block.requires_grad_(True)
            model.final_norm.requires_grad_(True)
        model.out_head.requires_grad_(True)
    if new_head:
        model.out_head.requires_grad_(True)
    return trainable_summary(model)


def trainable_summary(model: nn.Module) -> str:
    """ "trainable 1,327,106 of 124,441,346 parameters (1.07%)" (a tied weight counted once)."""
    params = list(model.parameters())  # each shared Parameter once
    total = sum(p.numel() for p in params)
    train = sum(p.numel() for p in params if p.requires_grad)
    share = train / total if total else 0.0
    return f"trainable {train:,} of {total:,} parameters ({share:.2%})"
