"""Instruction fine-tuning (the book's ch. 7) as a task for the :class:`~.trainer.Trainer`.

Shapes: B batch, T tokens, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model import Packing

IGNORE_INDEX = -100  # cross_entropy's default: targets that add nothing to the loss


def instruction_loss(
    model: nn.Module,
    inputs: torch.Tensor,
    lengths: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Mean next-token loss of right-padded rows inputs (B, T), each with ``lengths`` (B,)
    real tokens, against targets (B, T) where ``ignore_index`` marks what does not count
    (padding, and the prompt with --mask-prompt).

    The rows are packed first (:class:`~scratchgpt.model.Packing`): short examples share a
    row, each with its own positions and attention, so the padding of a batch (most of it,
    for instruction data of mixed lengths) is not computed. The loss is the same mean over
    the same targets as without packing.
    """
    packing = Packing.plan(lengths, inputs.size(1))
    logits = model(packing.pack(inputs), segments=packing.segments)  # (G, T, V)
    packed = packing.pack(targets, fill=ignore_index)  # (B, T) -> (G, T)
    # (G, T, V) -> (G*T, V) and (G, T) -> (G*T,): cross_entropy wants classes in dim 1.
    return F.cross_entropy(
        logits.flatten(0, 1).float(), packed.flatten(), ignore_index=ignore_index
    )
