"""Training on several processes: DDP (a copy of the model per GPU) or FSDP2 (shards).

``torchrun`` starts one process per GPU and tells each its place through environment
variables (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT); :func:`setup` reads them. Run
without torchrun, everything here is a no-op and the trainer is a plain single process.

- DDP (Li et al. 2020): every process holds the whole model and a different slice of the
  batch; gradients are averaged across processes during the backward pass. Cheapest when the
  model fits on one GPU.
- FSDP2 (``torch.distributed.fsdp.fully_shard``): each process keeps only a shard of every
  parameter, gradient and optimiser moment, gathering a block's weights just before using
  them. For models whose training state does not fit on one GPU.

Process 0 alone writes files; the others compute. The backend is NCCL on GPUs and gloo on the
CPU (which is how the tests run two processes on a laptop).
"""

from __future__ import annotations

import datetime
import functools
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes, GPU ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Process 0: the one that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def setup(device_type: str) -> World:
    """Join the process group torchrun described, or return a one-process World without it."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return World()
    world = World(
        rank=int(os.environ["RANK"]),
        size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )
    if world.size > 1 and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return world


def teardown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def blocks(model: nn.Module) -> list[nn.Module]:
    """The model's repeated layers (a GPT's ``trf_blocks``, an encoder's ``blocks``): the
    first list of modules all of one class. They are the units FSDP gathers one at a time and
    activation checkpointing recomputes one at a time."""
    for container in model.modules():
        if isinstance(container, (nn.ModuleList, nn.Sequential)) and len(container) > 0:
            kinds = {type(m) for m in container}
            if len(kinds) == 1:
                return list(container)
    return []


def checkpoint_activations(model: torch.nn.Module) -> None:
    """Recompute each block's activations during backward instead of keeping them.

    PyTorch's own wrapper (non-reentrant ``torch.utils.checkpoint``): memory drops from all
    blocks' activations to one block's, at the cost of a second forward pass per block. It
    inserts a ``_checkpoint_wrapped_module`` level into the module tree, and state-dict hooks
    that hide it again, so saved weights keep their names.
    """
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointImpl,
        apply_activation_checkpointing,
        checkpoint_wrapper,
    )

    repeated = set(blocks(model))
    apply_activation_checkpointing(
        model,
        checkpoint_wrapper_fn=functools.partial(
            checkpoint_wrapper, checkpoint_impl=CheckpointImpl.NO_REENTRANT
        ),
        check_fn=lambda module: module in repeated,
    )


def shard(model: nn.Module, world: World) -> None:
    """Shard ``model`` over the processes with FSDP2, in place (its parameters become
    DTensor shards); the caller keeps using, and saving through, the same object."""
    from torch.distributed.fsdp import fully_shard

    if not world.distributed:
        raise ValueError(
            "training.fsdp shards the model over processes: launch with torchrun "
            "--nproc_per_node N (N > 1), or turn fsdp off"
        )
    # Shard block by block, then the rest: each block's weights are gathered just before
    # its forward and freed after, so only one block is ever whole in memory.
    for block in blocks(model):
        fully_shard(block)
    fully_shard(model)


def replicate(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """``model`` wrapped in DDP (gradients averaged across processes in the backward pass);
    the caller keeps the unwrapped model for saving, so no ``module.`` prefix is ever saved."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def mean(values: torch.Tensor, world: World) -> torch.Tensor:
    """The average of ``values`` over all processes (the tensor itself with one process)."""
    if not world.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)  # gloo has no AVG
    return values / world.size


def any_true(flag: bool, world: World, device: torch.device) -> bool:
    """True on every process if ``flag`` is true on any (a stop signal reaching only one)."""
    if not world.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return bool(t.item() > 0)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, *, fsdp: bool
) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
    """(model weights, optimiser state) as whole tensors, gathered from the shards with FSDP.

    Without FSDP the weights are None (the model is saved directly) and the optimiser state is
    its ordinary ``state_dict()``.
    """
    if not fsdp:
        return None, optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    optim = get_optimizer_state_dict(model, optimizer, options=options)
    return weights, optim


def load_full_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    weights: dict[str, torch.Tensor],
    optim_state: dict[str, Any],
    *,
    fsdp: bool,
) -> None:
    """Load whole-tensor weights and optimiser state into a (possibly sharded) model."""
    if not fsdp:
        model.load_state_dict(weights)
        optimizer.load_state_dict(optim_state)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=False)
    set_model_state_dict(model, weights, options=options)
    set_optimizer_state_dict(model, optimizer, optim_state, options=options)
