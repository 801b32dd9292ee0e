"""A model trained here, written as Hugging Face's GPT-2: the mapping table run backwards.

``transformers.GPT2LMHeadModel.from_pretrained(directory)`` then gives the same logits, and
``AutoTokenizer.from_pretrained(directory)`` the same ids as our tokenizer (see
:mod:`.tokenizer_export`). A model GPT-2 cannot express (another normalisation epsilon would be
fine, a parameter the table has no row for is not) is refused with the reason, never written
approximately.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from safetensors.torch import save_file

from ..files import atomic_directory, atomic_write_text
from ..model import GPTModel
from ..tokenizers import Tokenizer
from .mapping import HF_CONFIG, HF_HEAD, HF_PREFIX, HF_WEIGHTS, config_to_hf, convert_to_hf
from .tokenizer_export import SCRATCHGPT_TOKENIZER, tokenizer_files

log = logging.getLogger(__name__)


def export_hf(model: GPTModel, tokenizer: Tokenizer | None, directory: str | Path) -> Path:
    """Write ``model`` in Hugging Face's GPT-2 format: config.json, model.safetensors, tokenizer.

    GPT-2's own tokenizer is written as vocab.json + merges.txt (``GPT2Tokenizer`` reads
    them); any other kind as a ``tokenizer.json`` that ``AutoTokenizer`` loads with the same
    ids, plus ours as ``scratchgpt_tokenizer.json``, which :func:`load_gpt2` reads back as the
    same class. ``tokenizer=None`` writes the model alone. A model GPT-2 cannot express is
    refused with the reason. Written atomically; an existing directory is replaced only if
    it holds a GPT-2 export. Returns the directory.

    Needs the ``tokenizers`` package (extra ``hf``) for tokenizers other than GPT-2's.
    """
    if not isinstance(model, GPTModel):
        raise TypeError(
            f"export_hf expects the raw GPTModel, got {type(model).__name__}: pass the model "
            "you built, not its torch.compile / DDP wrapper"
        )
    cfg = model.cfg
    dtype = model.tok_emb.weight.dtype
    eot = tokenizer.eot_id if tokenizer is not None else None
    config = config_to_hf(cfg, eot_id=eot, dtype=dtype)
    tensors = convert_to_hf(model.state_dict(), cfg)
    # GPT2LMHeadModel's own layout: the body under "transformer.", the head (untied) beside it.
    tensors = {(k if k == HF_HEAD else HF_PREFIX + k): v.cpu() for k, v in tensors.items()}
    # Built before anything is written, so a tokenizer that fails leaves no directory behind.
    files = (
        {} if tokenizer is None else tokenizer_files(tokenizer, context_length=cfg.context_length)
    )
    ours = tokenizer is not None and "vocab.json" not in files  # GPT-2's files say it all

    def write(tmp: Path) -> None:
        # "format": "pt" is what transformers checks a safetensors file's metadata for.
        save_file(tensors, str(tmp / HF_WEIGHTS), metadata={"format": "pt"})
        atomic_write_text(tmp / HF_CONFIG, json.dumps(config, indent=2) + "\n")
        for name, text in files.items():
            atomic_write_text(tmp / name, text)
        if ours:
            assert tokenizer is not None
            tokenizer.save(tmp / SCRATCHGPT_TOKENIZER)

    out = atomic_directory(
        directory, write, replaceable=_is_hf_gpt2_dir, what="a Hugging Face GPT-2 export"
    )
    log.info("exported %s tensors to %s", len(tensors), out)
    return out


def _is_hf_gpt2_dir(path: Path) -> bool:
    try:
        data = json.loads((path / HF_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("model_type") == "gpt2"
