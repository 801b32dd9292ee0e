"""The GPT model: embeddings, a stack of pre-norm transformer blocks, and an output head.

GPT-2 (Radford et al. 2019) is a decoder-only transformer: the token at each position is
embedded, its position's embedding added, and N identical blocks of causal self-attention and
a feed-forward layer refine the vectors; a final projection scores every vocabulary entry as
the next token (Raschka, "Build a LLM from Scratch", ch. 4). This is the only model class:
the textbook and fused attention paths, and every later feature, run on these parameters.

The model knows nothing of devices, precision, compilation or distribution: the caller applies
those (see ``scratchgpt.training``), so a saved state dict is always the plain one.

Shapes: B batch, T sequence length, C = emb_dim, V = vocab_size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import AttentionImpl, GPTConfig
from ..config.model import MLPKind, NormKind
from ..errors import ConfigError
from .attention import KVCache, MultiHeadAttention
from .layers import FeedForward, make_norm
from .positional import RotaryEmbedding, positional_encoding


class TransformerBlock(nn.Module):
    """x + Attention(Norm(x)), then x + FeedForward(Norm(x)).

    Pre-norm (normalise the input of each sub-layer, GPT-2's choice, unlike the original
    post-norm Transformer) leaves the residual path an untouched sum from input to output, so
    gradients reach the first layers undamped and deep stacks train without warmup tricks.
    Plain sizes, like its layers: ``GPTModel`` passes its config's values down.
    """

    def __init__(
        self,
        emb_dim: int,
        n_heads: int,
        *,
        hidden_dim: int | None = None,
        drop_rate: float = 0.0,
        qkv_bias: bool = False,
        attn_impl: AttentionImpl = "sdpa",
        ln_eps: float = 1e-5,
        norm: NormKind = "layernorm",
        mlp: MLPKind = "gelu",
        bias: bool = True,
        n_kv_heads: int | None = None,
        qk_norm: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, emb_dim, eps=ln_eps, bias=bias)
        self.att = MultiHeadAttention(
            emb_dim,
            n_heads,
            n_kv_heads=n_kv_heads,
            drop_rate=drop_rate,
            qkv_bias=qkv_bias,
            bias=bias,
            qk_norm=qk_norm,
            norm_eps=ln_eps,
            attn_impl=attn_impl,
        )
        self.norm2 = make_norm(norm, emb_dim, eps=ln_eps, bias=bias)
        self.ff = FeedForward(emb_dim, hidden_dim=hidden_dim, activation=mlp, bias=bias)
        self.drop_shortcut = nn.Dropout(drop_rate)

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        input_pos: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        # The residual ("shortcut") connections: each sub-layer adds a correction to x.
        attended = self.att(self.norm1(x), mask=mask, input_pos=input_pos, rope=rope)
        x = x + self.drop_shortcut(attended)
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class GPTModel(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, V), always that one shape.

    The model takes its :class:`GPTConfig` (saved with every checkpoint and rebuilt from it)
    and hands its layers plain sizes, so the same layers serve the encoder and the notebooks.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.padded_vocab_size, cfg.emb_dim)
        # Attention itself is blind to order. GPT-2 adds a learned vector per position to the
        # tokens; "sinusoidal" adds the original Transformer's fixed waves; "rope" adds nothing
        # and rotates queries and keys inside attention instead (see positional.py).
        self.pos_emb: nn.Module | None = None
        self.rope: RotaryEmbedding | None = None
        if cfg.pos_encoding == "rope":
            self.rope = RotaryEmbedding(cfg.head_dim, base=cfg.rope_base)
        else:
            self.pos_emb = positional_encoding(
                cfg.pos_encoding, context_length=cfg.context_length, emb_dim=cfg.emb_dim
            )
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.ModuleList(
            TransformerBlock(
                cfg.emb_dim,
                cfg.n_heads,
                drop_rate=cfg.drop_rate,
                qkv_bias=cfg.qkv_bias,
                attn_impl=cfg.attn_impl,
                ln_eps=cfg.ln_eps,
                hidden_dim=cfg.hidden_dim,
                norm=cfg.norm,
                mlp=cfg.mlp,
                bias=cfg.bias,
                n_kv_heads=cfg.n_kv_heads,
                qk_norm=cfg.qk_norm,
            )
            for _ in range(cfg.n_layers)
        )
        self.final_norm = make_norm(cfg.norm, cfg.emb_dim, eps=cfg.ln_eps, bias=cfg.bias)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.padded_vocab_size, bias=False)
        if cfg.tie_weights:
            # Weight tying (Press & Wolf 2017): reading a token in and writing it out use the
            # same vectors; GPT-2 does this and it saves V * C parameters (38.6M for GPT-2).
            self.out_head.weight = self.tok_emb.weight
        if cfg.init == "gpt2":  # else "torch": the layers keep their PyTorch defaults
            self.apply(self._init_weights)
            # GPT-2's scaled init: each block adds two projections to the residual stream, so
            # scale their weights by 1/sqrt(2 * n_layers) to keep its variance flat with depth.
            for name, p in self.named_parameters():
                if name.endswith(("att.out_proj.weight", "ff.layers.2.weight")):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))
        if cfg.zero_init_proj:
            # The speedrun's start: each block's output projections at zero, so every block
            # begins as the identity and the first steps train the embeddings and the head.
            for block in self.trf_blocks:
                nn.init.zeros_(block.att.out_proj.weight)
                nn.init.zeros_(block.ff.layers[2].weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-2's N(0, 0.02): small enough that the initial logits are near zero, so the
        # first loss is about ln(V), the loss of a uniform guess.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def setup_cache(
        self,
        batch_size: int,
        max_seq_len: int | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        """Attach an empty KV cache of ``max_seq_len`` slots (default: the context length).

        Size it to prompt + new tokens: a decode step attends over every slot, so a cache
        longer than needed costs memory bandwidth on each token.
        """
        max_seq_len = max_seq_len or self.cfg.context_length
        if not 1 <= max_seq_len <= self.cfg.context_length:
            raise ValueError(
                f"max_seq_len={max_seq_len}: must be in [1, context_length="
                f"{self.cfg.context_length}]"
            )
        weight = self.tok_emb.weight
        dtype, device = dtype or weight.dtype, torch.device(device or weight.device)
        # Grouped-query attention caches only its n_kv_heads heads: the saving it exists for.
        shape = (batch_size, self.cfg.kv_heads, max_seq_len, self.cfg.head_dim)
        kept = self.__dict__.get("_kept_caches")
        if kept and (kept[0].k.shape, kept[0].k.dtype, kept[0].k.device) == (shape, dtype, device):
            caches = kept
            for cache in caches:  # stale values would only meet zero weights, but NaNs would not
                cache.k.zero_()
                cache.v.zero_()
        else:
            caches = [KVCache(*shape, dtype=dtype, device=device) for _ in self.trf_blocks]
        self.__dict__["_kept_caches"] = None
        self.attach_cache(caches)

    def attach_cache(self, caches: Sequence[KVCache]) -> None:
        """Use these caches, one per block, for the next forward passes.

        :meth:`setup_cache` allocates and attaches; a caller that manages its own cache (the
        server's batch of rows, see :mod:`scratchgpt.serving.engine`) attaches views of it
        (:meth:`KVCache.of`) sized to what each step reads.
        """
        if len(caches) != len(self.trf_blocks):
            raise ValueError(f"{len(caches)} caches for {len(self.trf_blocks)} blocks")
        for block, cache in zip(self.trf_blocks, caches, strict=True):
            block.att.kv_cache = cache

    @property
    def kv_caches(self) -> list[KVCache] | None:
        """The attached caches, one per block, or None without a cache."""
        caches = [block.att.kv_cache for block in self.trf_blocks]
        return None if caches[0] is None else caches

    def clear_cache(self, *, keep: bool = False) -> None:
        """Drop the KV cache: forward goes back to the plain full-sequence path.

        ``keep=True`` holds on to the cache's tensors so the next :meth:`setup_cache` of the
        same shape reuses them. A compiled decode step with frozen weights is specialised to
        the very cache tensors it was compiled with; new ones would mean compiling again.
        """
        caches = [block.att.kv_cache for block in self.trf_blocks]
        # In __dict__, not as an attribute nn.Module would register: kept tensors are neither
        # submodules nor state, and must not show up in modules() or move with .to().
        self.__dict__["_kept_caches"] = caches if keep and caches[0] is not None else None
        for block in self.trf_blocks:
            block.att.kv_cache = None

    @property
    def cache_len(self) -> int | None:
        """Slots in the attached KV cache, or None without one."""
        cache = self.trf_blocks[0].att.kv_cache
        return None if cache is None else cache.k.size(2)

    def forward(
        self,
        idx: torch.Tensor,
        *,
        input_pos: torch.Tensor | None = None,
        pad_offset: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """idx (B, T) int64 token ids -> logits (B, T, V), or (N, V) with ``logits_at``.

        ``input_pos`` (T,): the positions of these tokens, and the KV-cache slots they are
        written to (required with a cache; default 0..T-1); (B, T) gives each row its own
        (a server's rows stand at different positions). ``pad_offset`` (B,): how many
        left-padding tokens each row starts with, for batches of prompts of different lengths;
        pads are never attended to and real tokens count their positions from 0.
        ``segments`` (B, T): several texts packed in each row, numbered (each text's tokens
        contiguous; padding at the end of a row gets its own number): every text counts its
        positions from 0 and attends only within itself, as if it were alone in a row.
        ``logits_at`` (B, T) bool: only those positions' logits, (N, V) in row-major order. A
        loss that reads few positions (instruction tuning's responses) then skips the output
        layer, a V x C product per token and the largest single matmul of GPT-2, elsewhere.
        """
        if idx.dim() != 2:
            raise ValueError(f"expected token ids (batch, seq_len), got shape {tuple(idx.shape)}")
        T = idx.size(1)
        cache_len = self.cache_len
        if cache_len is None and self.cfg.context_length < T:
            raise ValueError(
                f"sequence length {T} exceeds context_length={self.cfg.context_length}; "
                "crop the input to its last context_length tokens"
            )
        if cache_len is not None and input_pos is None:
            raise ValueError("the model has a KV cache: pass input_pos, the slots to write")
        if input_pos is None:
            input_pos = torch.arange(T, device=idx.device)
        pos = input_pos.view(-1, T)  # (T,) -> (1, T), or per row (B, T) as is
        if pad_offset is not None:
            pos = (pos - pad_offset.unsqueeze(1)).clamp_min(0)  # (B, T): real tokens from 0
        if segments is not None:
            pos, packed_mask = packed_positions(segments)  # (B, T), (B, 1, T, T)
        x = self.tok_emb(idx)  # (B, T, C)
        rope = None
        if self.pos_emb is not None:
            # The sinusoidal table is computed in float32: match the embedding's dtype.
            x = x + self.pos_emb(pos).to(x.dtype)  # (B, T, C) + (1 or B, T, C)
        if self.rope is not None:
            rope = self.rope(pos)  # (cos, sin), each (1 or B, 1, T, hs / 2), for every block
        x = self.drop_emb(x)
        mask = None  # the fused kernel's own causal path when nothing else is needed
        if cache_len is not None or pad_offset is not None:
            mask = attention_mask(input_pos, cache_len or T, pad_offset)
        if segments is not None:
            if cache_len is not None:
                raise ValueError("packed texts (segments) cannot use a KV cache")
            mask = packed_mask
        for block in self.trf_blocks:
            x = block(x, mask=mask, input_pos=input_pos, rope=rope)
        x = self.final_norm(x)
        if logits_at is not None:
            x = x[logits_at]  # (B, T, C) -> (N, C)
        logits = self.out_head(x)  # (B, T, C) -> (B, T, padded V), or (N, C) -> (N, padded V)
        if self.cfg.logit_softcap is not None:
            # Gemma 2's soft cap: tanh squashes smoothly into (-cap, cap), so no logit (and no
            # gradient through a confident wrong guess) grows without bound.
            cap = self.cfg.logit_softcap
            logits = cap * torch.tanh(logits / cap)
        if self.cfg.padded_vocab_size != self.cfg.vocab_size:
            # The padding rows are not tokens: drop their logits so nothing can pick them.
            logits = logits[..., : self.cfg.vocab_size]  # (B, T, padded V) -> (B, T, V)
        return logits


def attention_mask(
    input_pos: torch.Tensor, n_keys: int, pad_offset: torch.Tensor | None = None
) -> torch.Tensor:
    """Which keys each query may attend: bool (B or 1, 1, T, S), True = attend.

    Built from positions, never with ``is_causal``: that flag aligns the triangle to the top
    left, which is wrong as soon as queries (T new tokens) and keys (S cached slots) differ
    in number. Query t sees slot s when s <= input_pos[t] and s is not left padding; a padding
    query sees only itself, so no row is all -inf (which would give NaN through the softmax).
    ``input_pos`` is (T,), or (B, T) when each row has its own positions.
    """
    slots = torch.arange(n_keys, device=input_pos.device).view(1, 1, -1)  # (1, 1, S)
    pos = input_pos.view(-1, input_pos.size(-1), 1)  # (T,) -> (1, T, 1), (B, T) -> (B, T, 1)
    mask = slots <= pos  # (B or 1, T, S): causal by position
    if pad_offset is not None:
        real = slots >= pad_offset.view(-1, 1, 1)  # (B, 1, S): not a padding slot
        mask = mask & (real | (slots == pos))  # (B, T, S)
    return mask.unsqueeze(1)  # (B or 1, T, S) -> (B or 1, 1, T, S)


def packed_positions(segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (B, T) and attention mask (B, 1, T, T) of rows holding packed texts.

    ``segments`` (B, T) numbers the texts of each row (each one's tokens contiguous). A token's
    position counts from its text's first token; it attends to earlier tokens of its own text
    only. That is exactly what each text would see alone (causal attention never looks right
    and never crosses into another text), so packing changes no text's logits.
    """
    B, T = segments.shape
    cols = torch.arange(T, device=segments.device).expand(B, T)  # (B, T)
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]  # (B, T): where a text begins
    first = torch.where(starts, cols, torch.zeros_like(cols)).cummax(dim=1).values  # (B, T)
    same = segments.unsqueeze(2) == segments.unsqueeze(1)  # (B, T, 1) == (B, 1, T) -> (B, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=segments.device).tril()  # (T, T)
    return cols - first, (same & causal).unsqueeze(1)  # (B, T), (B, T, T) -> (B, 1, T, T)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of next-token prediction: logits (B, T, V), targets (B, T).

    Kept outside the model so ``forward`` has one output shape and the loss can change
    (masking, label smoothing) without touching the architecture.
    """
    # (B, T, V) -> (B*T, V) and (B, T) -> (B*T,): cross_entropy wants classes in dim 1.
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def num_parameters(model: nn.Module) -> int:
    """Trainable parameters, a tied weight counted once (as ``model.parameters()`` yields it)."""
    return sum(p.numel() for p in model.parameters())


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Dropout off for the block (evaluation, generation, inspection), then the caller's mode.

    Evaluating in the middle of training must not leave the model in eval mode, and a caller
    that had it in eval mode must not find it switched to training.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def crop_context(model: GPTModel, context_length: int) -> GPTModel:
    """Shorten ``model``'s context window to its first ``context_length`` positions, in place.

    GPT-2 learned one embedding per position; keeping the first rows is exact for every
    sequence that fits, and a shorter window makes attention cheaper (fine-tuning on a small
    machine, comparing with a model trained at 256). Returns the model.
    """
    n = model.cfg.context_length
    if isinstance(context_length, bool) or not isinstance(context_length, int):
        raise ConfigError(f"context_length={context_length!r}: must be an integer")
    if not 1 <= context_length <= n:
        raise ConfigError(
            f"context_length={context_length}: a model's context can only be cropped, to "
            f"between 1 and its {n}"
        )
    if context_length < n:
        if isinstance(model.pos_emb, nn.Embedding):  # learned: keep the first rows
            old = model.pos_emb.weight
            with torch.no_grad():
                rows = old[:context_length].clone()  # (n, C) -> (context_length, C)
            model.pos_emb.weight = nn.Parameter(rows, requires_grad=old.requires_grad)
            model.pos_emb.num_embeddings = context_length
        # Computed (sinusoidal, rotary) positions have no table to cut: only the limit changes.
        model.cfg = dataclasses.replace(model.cfg, context_length=context_length)
    return model


def add_class_head(model: GPTModel, num_classes: int) -> GPTModel:
    """Replace ``model``'s V-row output head by one of ``num_classes`` rows, in place.

    The book's ch. 6 classifier: the body that learned language stays, and the head that
    scored 50,257 next tokens becomes a fresh Linear scoring K classes (with a bias, and
    untied from the token embedding, which keeps its own weights). ``forward`` then returns
    (B, T, K); :func:`last_token_logits` reads the row of each text's last token.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes={num_classes!r}: a classifier needs >= 2 classes")
    device, dtype = model.tok_emb.weight.device, model.tok_emb.weight.dtype
    model.out_head = nn.Linear(model.cfg.emb_dim, num_classes, device=device, dtype=dtype)
    return model


def last_token_logits(model: nn.Module, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Class logits (B, K) of right-padded texts ids (B, T) with ``lengths`` (B,) real tokens.

    Why the last real token: attention is causal, so only the last token has seen the whole
    text; and padding sits to its right, where it can never change what that token sees. A
    text's logits are therefore the same alone or padded in any batch.

    The texts are packed first (:class:`Packing`): short ones share a row instead of each
    being padded to the longest, so the model runs on far fewer padding tokens (half of an
    SMS batch of 8 is padding), with each text still seeing only itself.
    """
    packing = Packing.plan(lengths, ids.size(1))
    logits = model(packing.pack(ids), segments=packing.segments)  # (G, T, K)
    return logits[packing.rows, packing.starts + lengths - 1]  # (G, T, K) -> (B, K)


@dataclass(frozen=True)
class Packing:
    """Where each of B right-padded texts goes when they are packed into G <= B rows.

    First-fit by decreasing length, into rows as wide as the batch's longest text: the
    attention per row costs no more than before, and every Linear runs on G rows instead of
    B. Text i occupies row ``rows[i]``, columns ``starts[i]`` to ``starts[i] + lengths[i]``;
    ``segments`` (G, T) numbers the texts for :meth:`GPTModel.forward` (the padding left at
    the end of a row is a text of its own, numbered B + row).
    """

    rows: torch.Tensor  # (B,)
    starts: torch.Tensor  # (B,)
    lengths: torch.Tensor  # (B,)
    segments: torch.Tensor  # (G, T)

    @classmethod
    def plan(cls, lengths: torch.Tensor, width: int) -> Packing:
        sizes = lengths.tolist()
        rows, starts = [0] * len(sizes), [0] * len(sizes)
        used: list[int] = []  # columns taken in each packed row
        for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
            row = next((r for r, n in enumerate(used) if n + sizes[i] <= width), len(used))
            if row == len(used):
                used.append(0)
            rows[i], starts[i] = row, used[row]
            used[row] += sizes[i]
        device = lengths.device
        segments = torch.arange(len(sizes), len(sizes) + len(used), device=device)
        segments = segments.unsqueeze(1).repeat(1, width)  # (G,) -> (G, T)
        plan = cls(
            torch.tensor(rows, device=device),
            torch.tensor(starts, device=device),
            lengths,
            segments,
        )
        texts = torch.arange(len(sizes), device=device).unsqueeze(1).expand(-1, width)  # (B, T)
        segments[plan._where()] = texts[plan._real()]
        return plan

    def _real(self) -> torch.Tensor:
        """(B, T) True at each text's real tokens."""
        cols = torch.arange(self.segments.size(1), device=self.lengths.device)
        return cols.unsqueeze(0) < self.lengths.unsqueeze(1)  # (1, T) < (B, 1) -> (B, T)

    def _where(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(packed rows, packed columns) of every real token, in the order of ``_real()``."""
        text, col = self._real().nonzero(as_tuple=True)  # (N,), (N,)
        return self.rows[text], self.starts[text] + col

    def pack(self, x: torch.Tensor, fill: int = 0) -> torch.Tensor:
        """Right-padded rows x (B, T) -> packed rows (G, T); the rest is ``fill``."""
        G, T = self.segments.shape
        out = torch.full((G, T), fill, dtype=x.dtype, device=x.device)
        out[self._where()] = x[self._real()]
        return out
