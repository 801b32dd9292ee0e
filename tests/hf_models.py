"""Tiny random GPT-2s made with transformers, saved in the layouts OpenAI's weights come in."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

# (n_layer, n_embd, n_head, vocab, context, tied): heads != layers, an odd vocabulary larger
# than the tokenizer's, GPT-2's own context of 1024 and a short one, and an untied head.
SHAPES = {
    "gpt2-vocab-ctx1024": dict(n_layer=2, n_embd=32, n_head=4, vocab_size=50257, n_positions=1024),
    "odd-vocab-ctx64": dict(n_layer=5, n_embd=48, n_head=3, vocab_size=50263, n_positions=64),
    "untied-ctx64": dict(
        n_layer=1, n_embd=24, n_head=6, vocab_size=50257, n_positions=64, tie_word_embeddings=False
    ),
}


def random_hf_model(seed: int = 0, **shape: object) -> GPT2LMHeadModel:
    """A GPT2LMHeadModel with every parameter random, biases and LayerNorms included.

    transformers initialises biases to 0 and LayerNorm to (1, 0), which would hide a bias or
    a LayerNorm mapped to the wrong place; random values everywhere cannot hide anything.
    """
    config = GPT2Config(**shape, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm_scale = name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight"))
            p.normal_(1.0 if is_norm_scale else 0.0, 0.1)
    return model


def copy_gpt2_tokenizer(
    directory: Path, encoder: Path, merges: Path, *, openai: bool = False
) -> None:
    """GPT-2's tokenizer files under Hugging Face's names, or OpenAI's."""
    names = ("encoder.json", "vocab.bpe") if openai else ("vocab.json", "merges.txt")
    shutil.copy(encoder, directory / names[0])
    shutil.copy(merges, directory / names[1])


def save_openai_hub_layout(model: GPT2LMHeadModel, directory: Path) -> None:
    """The layout of openai-community/gpt2's model.safetensors: no "transformer." prefix, no
    lm_head, and the causal-mask buffers older transformers saved as if they were weights."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    state = model.state_dict()
    tensors = {k.removeprefix("transformer."): v.contiguous() for k, v in state.items()}
    tensors.pop("lm_head.weight", None)
    n = cfg.n_positions
    for i in range(cfg.n_layer):
        tensors[f"h.{i}.attn.bias"] = torch.ones(n, n).tril().view(1, 1, n, n)
        tensors[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(cfg.to_dict()))


def hf_greedy(model: GPT2LMHeadModel, ids: torch.Tensor, n: int) -> torch.Tensor:
    """n greedy tokens from transformers, the plain way: argmax of the last position, append."""
    with torch.no_grad():
        for _ in range(n):
            nxt = model(ids).logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            ids = torch.cat([ids, nxt], dim=1)
    return ids


# Where tiktoken's "gpt2" encoding fetches GPT-2's two files from; it caches each one under the
# SHA-1 of its address in TIKTOKEN_CACHE_DIR (checking the SHA-256 the shared copies have).
TIKTOKEN_GPT2_URLS = {
    "encoder": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
    "merges": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
}


def tiktoken_gpt2_cache(cache: Path, encoder: Path, merges: Path) -> Path:
    """A tiktoken cache holding GPT-2's files, as a first online use leaves it: no network."""
    cache.mkdir(parents=True, exist_ok=True)
    for key, source in (("encoder", encoder), ("merges", merges)):
        name = hashlib.sha1(TIKTOKEN_GPT2_URLS[key].encode()).hexdigest()
        shutil.copy(source, cache / name)
    return cache
