"""OpenAI's GPT-2 weights in, models trained here out, through one mapping table.

OpenAI released GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask
Learners") in four sizes as TensorFlow checkpoints; the Hugging Face hub
(``openai-community/gpt2*``) carries the same weights as safetensors under transformers'
names. Our :class:`~scratchgpt.model.GPTModel` is the same network under other names (Raschka,
"Build a LLM from Scratch", ch. 5.5). One module per concern:

- :mod:`.mapping`: the mapping table (Conv1D transposes, the fused c_attn, ignored buffers,
  the tied head), both directions, and the configs (``config.json`` <-> GPTConfig);
- :mod:`.weights`: reading a Hugging Face directory (safetensors, sharded or not) or OpenAI's
  TensorFlow release (extra ``tf``), tensor by tensor;
- :mod:`.hub`: GPT-2 by name through huggingface_hub's cache (extra ``hf``), offline
  handling, and what a name or directory means;
- :mod:`.load`: :func:`load_gpt2` and :func:`load_pretrained`, with the tokenizer that
  belongs to the weights (or None where none is known);
- :mod:`.export`: :func:`export_hf`, the table backwards, so transformers gives the same
  logits; :mod:`.tokenizer_export` writes the tokenizer so ``AutoTokenizer`` gives the same ids.

:func:`crop_context` lives in :mod:`scratchgpt.model` and is re-exported here.
"""

from __future__ import annotations

from ..model import crop_context
from .export import export_hf
from .hub import ALIASES, GPT2_NAMES, HUB_FILES, HUB_REPOS, download_gpt2, hub_repo
from .load import GPT2_VOCAB_SIZE, load_gpt2, load_pretrained
from .mapping import (
    EXPORTED_FIELDS,
    HEAD,
    HF_CONFIG,
    HF_HEAD,
    HF_INDEX,
    HF_KEYS_OUTSIDE,
    HF_KEYS_PER_BLOCK,
    HF_PREFIX,
    HF_WEIGHTS,
    IGNORED,
    MAPPING,
    QKV,
    config_from_hf,
    config_to_hf,
    convert_from_hf,
    convert_to_hf,
    hf_keys,
)
from .tokenizer_export import GPT2_TOKENIZER_FILES, SCRATCHGPT_TOKENIZER, hf_tokenizer
from .weights import LazyTensors, openai_to_hf_name

__all__ = [
    "ALIASES",
    "EXPORTED_FIELDS",
    "GPT2_NAMES",
    "GPT2_TOKENIZER_FILES",
    "GPT2_VOCAB_SIZE",
    "HEAD",
    "HF_CONFIG",
    "HF_HEAD",
    "HF_INDEX",
    "HF_KEYS_OUTSIDE",
    "HF_KEYS_PER_BLOCK",
    "HF_PREFIX",
    "HF_WEIGHTS",
    "HUB_FILES",
    "HUB_REPOS",
    "IGNORED",
    "MAPPING",
    "QKV",
    "SCRATCHGPT_TOKENIZER",
    "LazyTensors",
    "config_from_hf",
    "config_to_hf",
    "convert_from_hf",
    "convert_to_hf",
    "crop_context",
    "download_gpt2",
    "export_hf",
    "hf_keys",
    "hf_tokenizer",
    "hub_repo",
    "load_gpt2",
    "load_pretrained",
    "openai_to_hf_name",
]
