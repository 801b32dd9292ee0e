"""LoRA: fine-tune a GPTModel by training a small low-rank correction beside frozen weights.

Low-Rank Adaptation (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models";
Raschka, "Build a LLM from Scratch", appendix E) keeps every pretrained weight W (out, in)
frozen and learns, for some of the Linear layers, an update of rank r << min(in, out):

    y = x W^T + b + (alpha / r) * x A^T B^T        A: (r, in), B: (out, r)

Fine-tuning changes weights by an update that is close to low rank, so r = 8 or 16 adapts a
model well while training (and saving) well under 1% of its parameters. B starts at zero, so
a fresh adapter is exactly the base model; alpha / r scales the update so that changing r
does not change how large a step the optimiser takes in function space.

One module per concern here: :class:`LoRALinear` wraps one Linear; :func:`apply_lora` and
:func:`merge_lora` put adapters in and fold them back; :func:`adapter_state` and
:func:`weights_sha256` are what a saved adapter is made of (its weights, pinned to its base
model's checksum); :func:`export_peft` writes Hugging Face PEFT's format.

Shapes: C = emb_dim, r = rank, n = how many of q, k, v carry an adapter in one block.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from .errors import ConfigError
from .files import atomic_directory, atomic_write_text
from .pretrained.mapping import HF_PREFIX, QKV


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update.

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T, with scaling = alpha / r.

    ``weight`` and ``bias`` are the wrapped Linear's own Parameter objects (no copy), so the
    state dict keeps the Linear's keys and gains only ``lora_A`` (r, in) and ``lora_B``
    (out, r): a checkpoint of the adapted model still loads the base weights by name.
    """

    def __init__(self, base: nn.Linear, *, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha = rank, float(alpha)
        self.scaling = self.alpha / rank
        self.weight = base.weight  # the same Parameter: shared, never copied
        self.bias = base.bias  # a Parameter or None (registered either way)
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **like))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, **like))
        # A random and B zero: the update B A starts at exactly zero (the base model), while
        # B's gradient (which goes through A x) is non-zero from the first step. A gets
        # nn.Linear's own default init (kaiming-uniform with a = sqrt(5)), as PEFT does.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, in) -> (B, T, out), plus (B, T, in) -> (B, T, r) -> (B, T, out). Two thin
        # matmuls instead of forming B A (out, in): cheaper, and W is never touched.
        update = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)
        # One fused multiply-add over the (B, T, out) output, not a scale and then an add.
        return torch.add(F.linear(x, self.weight, self.bias), update, alpha=self.scaling)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain Linear computing the same function (in eval mode): W + scaling * B A.

        The product is formed in float32 and rounded once to the weight's dtype, so merging a
        bf16 model loses no more than one rounding. The bias is the same Parameter.
        """
        linear = nn.Linear(
            self.in_features, self.out_features, bias=self.bias is not None, device="meta"
        )
        delta = self.scaling * (self.lora_B.float() @ self.lora_A.float())  # (out, in)
        linear.weight = nn.Parameter((self.weight.float() + delta).to(self.weight.dtype))
        linear.bias = self.bias
        return linear

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank}, alpha={self.alpha:g}, dropout={self.dropout.p:g}"
        )


# Which Linears of each transformer block get an adapter, by suffix of their module name.
TARGET_PRESETS: dict[str, tuple[str, ...]] = {
    # The book's appendix E replaces every Linear; restricted here to the blocks (the output
    # head is tied to the embedding in GPT-2, and PEFT's GPT-2 adapters stay in the blocks).
    "all": (
        "att.W_query",
        "att.W_key",
        "att.W_value",
        "att.out_proj",
        "ff.layers.0",
        "ff.layers.2",
    ),
    "qv": ("att.W_query", "att.W_value"),  # the LoRA paper's choice
    "attn": ("att.W_query", "att.W_key", "att.W_value", "att.out_proj"),
    "mlp": ("ff.layers.0", "ff.layers.2"),
}


def _block_linears(model: nn.Module) -> list[str]:
    """Full names of the plain Linears inside ``model.trf_blocks``, in model order."""
    blocks = getattr(model, "trf_blocks", None)
    if not isinstance(blocks, nn.Module):
        raise ConfigError(
            f"LoRA needs a GPTModel (transformer blocks in .trf_blocks), got {type(model).__name__}"
        )
    return [
        name
        for name, module in blocks.named_modules(prefix="trf_blocks")
        if isinstance(module, nn.Linear)
    ]


def lora_targets(model: nn.Module, targets: str) -> list[str]:
    """The full module names (``trf_blocks.0.att.W_query``, ...) that ``targets`` selects.

    ``targets`` is a preset name (see :data:`TARGET_PRESETS`) or a comma-separated list of
    presets, name suffixes (``att.W_query,ff.layers.0``) and fnmatch patterns of full names
    (``trf_blocks.1.att.*``). Each item must select at least one Linear, so a typo is an error
    rather than a smaller adapter than the one asked for.
    """
    linears = _block_linears(model)
    items = [item.strip() for item in str(targets).split(",") if item.strip()]
    if not items:
        raise ConfigError(
            f"LoRA targets {targets!r} is empty: give a preset ({', '.join(TARGET_PRESETS)}) "
            "or module-name suffixes such as att.W_query"
        )
    chosen: set[str] = set()
    for item in items:
        suffixes = TARGET_PRESETS.get(item, (item,))
        # A full name or pattern, or (with "*." in front) the end of a name after a dot.
        hits = {
            name
            for name in linears
            for s in suffixes
            if fnmatch.fnmatchcase(name, s) or fnmatch.fnmatchcase(name, "*." + s)
        }
        if not hits:
            valid = dict.fromkeys(re.sub(r"^trf_blocks\.\d+\.", "", n) for n in linears)
            raise ConfigError(
                f"LoRA target {item!r} matches no Linear in the transformer blocks; use a "
                f"preset ({', '.join(TARGET_PRESETS)}), suffixes ({', '.join(valid)}) or "
                "fnmatch patterns of full names (trf_blocks.0.att.*)"
            )
        chosen |= hits
    return [name for name in linears if name in chosen]


def has_lora(model: nn.Module) -> bool:
    """Whether any LoRALinear is in ``model``."""
    return any(isinstance(m, LoRALinear) for m in model.modules())


def _check_settings(rank: Any, alpha: Any, dropout: Any) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise ConfigError(f"LoRA rank={rank!r}: must be an integer >= 1 (8 or 16 is typical)")
    number = (int, float)
    if isinstance(alpha, bool) or not isinstance(alpha, number) or not 0 < alpha < math.inf:
        raise ConfigError(f"LoRA alpha={alpha!r}: must be a positive number (often 2 * rank)")
    if isinstance(dropout, bool) or not isinstance(dropout, number) or not 0 <= dropout < 1:
        raise ConfigError(f"LoRA dropout={dropout!r}: must be in [0, 1)")


def apply_lora(
    model: nn.Module, *, rank: int, alpha: float, dropout: float = 0.0, targets: str = "all"
) -> list[str]:
    """Freeze every parameter of ``model`` and wrap the ``targets`` Linears in LoRALinear.

    In place; afterwards only the ``lora_A`` / ``lora_B`` parameters require grad, so an
    optimiser built from ``p for p in model.parameters() if p.requires_grad`` trains just the
    adapter. Returns the names of the wrapped modules.
    """
    _check_settings(rank, alpha, dropout)
    if has_lora(model):
        raise ConfigError(
            "the model already has LoRA adapters: merge them (merge_lora) or start from the "
            "base model before applying new ones"
        )
    names = lora_targets(model, targets)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        lora = LoRALinear(getattr(parent, child), rank=rank, alpha=alpha, dropout=dropout)
        setattr(parent, child, lora)  # also works for Sequential children ("0", "2")
    return names


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight (W + scaling * B A): a plain model again, in place.

    The result has exactly the base model's state-dict keys and no extra inference cost.
    Every parameter requires grad afterwards, as in a freshly built model: apply_lora froze
    them all, and a merged model is no longer an adapter on a frozen base.
    """
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, module.merged())
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _is_lora_key(key: str) -> bool:
    return key.endswith((".lora_A", ".lora_B"))


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The ``lora_A`` / ``lora_B`` entries of ``model.state_dict()``: what an adapter saves."""
    return {k: v for k, v in model.state_dict().items() if _is_lora_key(k)}


def lora_settings(model: nn.Module) -> dict[str, Any]:
    """``{"rank", "alpha", "dropout", "targets"}`` read back from the model's adapters."""
    modules = {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    if not modules:
        raise ConfigError("the model has no LoRA adapters (apply_lora adds them)")
    kinds = {(m.rank, m.alpha, m.dropout.p) for m in modules.values()}
    if len(kinds) > 1:
        raise ConfigError(f"the model's LoRA adapters differ in (rank, alpha, dropout): {kinds}")
    rank, alpha, dropout = kinds.pop()
    return {"rank": rank, "alpha": alpha, "dropout": dropout, "targets": list(modules)}


def weights_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """A checksum of named weights: sorted by name, each name, dtype, shape and raw bytes.

    An adapter only means something on top of the exact weights it was trained on; saving
    this checksum of the base model with it lets a loader refuse any other base. Tied
    tensors are hashed under each of their names, so the state dict alone decides the value.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach()
        header = f"{name}\0{str(tensor.dtype).removeprefix('torch.')}\0{tuple(tensor.shape)}\0"
        digest.update(header.encode("utf-8"))
        # (any shape) -> (numel,) -> (numel * itemsize,) bytes, streamed without a str() copy
        raw = tensor.cpu().contiguous().reshape(-1).view(torch.uint8)
        digest.update(raw.numpy().data)
    return digest.hexdigest()


# Our module suffix in a block -> GPT-2's module name in Hugging Face (see pretrained.mapping).
_HF_MODULES = {
    "att.out_proj": "attn.c_proj",
    "ff.layers.0": "mlp.c_fc",
    "ff.layers.2": "mlp.c_proj",
    **{f"att.{w}": "attn.c_attn" for w in QKV},
}
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."  # PeftModel wraps the model twice: LoraModel, then GPT-2


def _peft_tensors(model: nn.Module, rank: int) -> dict[str, dict[str, torch.Tensor]]:
    """{HF module name: {"A": (r', in), "B": (out, r')}} for every adapter, in PEFT's layout."""
    fused: dict[str, dict[int, LoRALinear]] = {}  # c_attn name -> {0 q, 1 k, 2 v: adapter}
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, module in model.named_modules():
        if not isinstance(module, LoRALinear):
            continue
        match = re.fullmatch(r"trf_blocks\.(\d+)\.(.+)", name)
        if match is None or match.group(2) not in _HF_MODULES:
            raise ConfigError(
                f"LoRA adapter on {name!r} has no GPT-2 counterpart; PEFT export supports "
                f"{', '.join(_HF_MODULES)} inside the blocks"
            )
        block, suffix = match.groups()
        hf = f"{HF_PREFIX}h.{block}.{_HF_MODULES[suffix]}"
        if hf.endswith("c_attn"):
            fused.setdefault(hf, {})[QKV.index(suffix.removeprefix("att."))] = module
        else:  # one Linear <-> one Conv1D: PEFT keeps A, B in the Linear layout for both
            out[hf] = {"A": module.lora_A.detach(), "B": module.lora_B.detach()}
    # GPT-2 fuses q, k and v into one Conv1D c_attn: in the Linear layout, one (3C, C) weight
    # whose rows are [W_q; W_k; W_v]. Our three adapters change it by
    #     dW = [s B_q A_q; s B_k A_k; s B_v A_v]                 (zero rows for a missing one)
    # which is itself one low-rank product s B A of rank n * r (n adapters present):
    #     A = [A_q; A_k; A_v]                  (n r, C): the A's stacked along their rows
    #     B = [[B_q, 0, 0], [0, B_k, 0], [0, 0, B_v]]  (3C, n r): B_q in rows 0:C, cols 0:r, ...
    # since row block i of B A is B_i A_i. PEFT's per-module rank_pattern / alpha_pattern then
    # give c_attn rank n r and alpha n alpha, so its scaling alpha / r stays the same s.
    for hf, parts in fused.items():
        slots = sorted(parts)
        C = parts[slots[0]].out_features
        A = torch.cat([parts[i].lora_A.detach() for i in slots])  # n x (r, C) -> (n r, C)
        B = A.new_zeros(3 * C, len(slots) * rank)  # (3C, n r)
        for j, i in enumerate(slots):
            B[i * C : (i + 1) * C, j * rank : (j + 1) * rank] = parts[i].lora_B.detach()
        out[hf] = {"A": A, "B": B}
    return out


def export_peft(model: nn.Module, directory: str | Path, *, base_model_name_or_path: str) -> Path:
    """Write ``model``'s adapter in Hugging Face PEFT's format: config JSON + safetensors.

    ``PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(base), directory)``, with
    ``base`` an :func:`~scratchgpt.pretrained.export_hf` of the same base weights, then gives
    the logits of ``model``. Only the adapter is written (a few MB), pinned to the base by
    ``base_model_name_or_path``. Written atomically; an existing directory is replaced only
    if it holds a PEFT LoRA adapter. Returns the directory.
    """
    if not has_lora(model):
        raise ConfigError("the model has no LoRA adapters to export (apply_lora adds them)")
    settings = lora_settings(model)
    rank, alpha = settings["rank"], settings["alpha"]
    modules = _peft_tensors(model, rank)
    tensors: dict[str, torch.Tensor] = {}
    rank_pattern: dict[str, int] = {}
    alpha_pattern: dict[str, float] = {}
    for hf, ab in sorted(modules.items()):
        for part in ("A", "B"):
            key = f"{_PEFT_PREFIX}{hf}.lora_{part}.weight"
            tensors[key] = ab[part].cpu().contiguous()
        n = ab["A"].shape[0] // rank  # the fused c_attn: n adapters in one
        if n > 1:
            # Keys are regular expressions matched against the end of module names.
            rank_pattern[re.escape(hf)] = n * rank
            alpha_pattern[re.escape(hf)] = n * alpha
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(base_model_name_or_path),
        "r": rank,
        "lora_alpha": alpha,
        # PEFT drops x once per module; ours drops it once per Linear, so with dropout on the
        # fused c_attn sees one mask where we saw three. The same in eval mode (no dropout).
        "lora_dropout": settings["dropout"],
        "target_modules": sorted(modules),
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        # GPT-2's Conv1D stores (in, out); PEFT wants this flag for it (and sets it itself
        # if missing). lora_A / lora_B keep the Linear layout either way.
        "fan_in_fan_out": True,
        "bias": "none",
        "inference_mode": True,
    }

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp / PEFT_WEIGHTS), metadata={"format": "pt"})
        atomic_write_text(tmp / PEFT_CONFIG, json.dumps(config, indent=2) + "\n")

    return atomic_directory(
        directory, write, replaceable=_is_peft_lora_dir, what="a PEFT LoRA adapter"
    )


def _is_peft_lora_dir(path: Path) -> bool:
    try:
        data = json.loads((path / PEFT_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("peft_type") == "LORA"
