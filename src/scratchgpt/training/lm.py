"""Language modelling as a task for the :class:`~.trainer.Trainer`, and :func:`train`.

What is particular to training a GPT: the text and its tokenizer (built from the data, a
prepared token directory, or a pretrained model's own), the window loaders (a batch is a
pure function of its number, :mod:`scratchgpt.data.loaders`), next-token cross-entropy, the
train and validation loss estimates on fixed batches, a sample of text, and checkpoints that
``scratchgpt generate`` reads (:mod:`scratchgpt.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import CheckpointError, load_checkpoint
from ..config import GPTConfig, RunConfig, TrainConfig, load_run_config, preset, read_config_file
from ..data import RandomWindows, SequentialWindows, WindowLoader, load_text
from ..device import autocast
from ..errors import ConfigError, DataError, TokenizerError
from ..generation import generate
from ..model import GPTModel, eval_mode, lm_loss
from ..tokenizers import Tokenizer, get_tokenizer, load_tokenizer
from .finetune import prepare_for_training
from .launch import launch, saved_config
from .metrics import flops_per_token
from .runs import TrainResult, new_run_dir
from .task import Batch, Feed, Task

log = logging.getLogger(__name__)

# On a CPU, warn when one evaluation's forward passes would take over a minute at an assumed
# 50 GFLOP/s (a few laptop cores): 3e12 FLOPs. The shakespeare-char config's GPU-sized
# evaluation (200 batches x 64 x 256 tokens per split) is 50 times that.
CPU_FLOPS = 50e9
CPU_EVAL_SECONDS = 60.0


def forward_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The training objective: next-token cross-entropy of ``model`` on inputs ``x`` and
    targets ``y`` (both (B, T)). The unit that ``training.compile`` compiles."""
    return lm_loss(model(x), y)


def _mean_loss(model: nn.Module, batches: Iterable[Batch], n: int) -> float:
    """Mean of ``forward_loss`` over ``n`` batches (one host sync, at the end)."""
    total: torch.Tensor | None = None
    for x, y in batches:
        loss = forward_loss(model, x, y)
        total = loss if total is None else total + loss
    assert total is not None, "no batches to evaluate"
    return total.item() / n


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: WindowLoader,
    *,
    batches: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Mean loss over batches 0..batches-1 of ``loader`` (the same ones every time), no dropout."""
    chosen = (loader.batch(i) for i in range(batches))
    with eval_mode(model), autocast(device, dtype):
        return _mean_loss(model, ((x.to(device), y.to(device)) for x, y in chosen), batches)


# --- what the run trains on ---------------------------------------------------------------------


@dataclass
class _Data:
    tokenizer: Tokenizer
    train: list[np.ndarray]
    val: list[np.ndarray]
    prepared: bool
    chars_per_val_token: float | None = None


def _load_data(run: RunConfig, tokenizer: Tokenizer | None) -> _Data:
    """The token streams of the train and validation splits, and the tokenizer."""
    from ..data import is_prepared, load_prepared

    source = run.data.source
    if source.startswith("hf:"):
        source = _prepare_into_cache(run, tokenizer)
    if is_prepared(source):
        prep = load_prepared(source)
        tok = tokenizer or prep.tokenizer
        if tok.vocab_size != prep.tokenizer.vocab_size:
            raise ConfigError(
                f"{source} was prepared with a {prep.tokenizer.vocab_size}-token tokenizer, "
                f"not this {tok.vocab_size}-token one: prepare the data again with it"
            )
        train, val = prep.shards("train"), prep.shards("val")
        if not val:
            raise DataError(f"{source} has no validation split: prepare it with --val-fraction")
        return _Data(tok, train, val, prepared=True)
    text = load_text(source, text_field=run.data.text_field, cache_dir=run.data.cache_dir)
    tok = tokenizer or get_tokenizer(
        run.tokenizer.name or "char", text=text, vocab_size=run.tokenizer.vocab_size
    )
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    cut = int(len(ids) * run.data.train_ratio)
    val = ids[cut:]
    n_val_chars = len(tok.decode(val.tolist()))
    return _Data(
        tok, [ids[:cut]], [val], prepared=False, chars_per_val_token=n_val_chars / max(1, len(val))
    )


def _prepare_into_cache(run: RunConfig, tokenizer: Tokenizer | None) -> str:
    """Tokenize a streamed (hf:) dataset into shards under the cache, once: a later run with
    the same data and tokenizer finds them ready (and an interrupted one resumes)."""
    from ..data import cache_directory, prepare

    name = run.tokenizer.name
    if tokenizer is None and name in (None, "char", "simple", "bpe"):
        raise ConfigError(
            f"data.source={run.data.source!r} is streamed, so the tokenizer cannot be built "
            "from the whole text: set tokenizer.name to gpt2 or a saved tokenizer (or train "
            "one first with scratchgpt tokenizer train)"
        )
    tok = tokenizer or get_tokenizer(name)  # type: ignore[arg-type]
    key = {"source": run.data.source, "text_field": run.data.text_field, "tokenizer": str(name)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    out = cache_directory(run.data.cache_dir) / "prepared" / digest
    log.info("preparing %s into %s (once; later runs reuse it)", run.data.source, out)
    prepare(
        run.data.source,
        tokenizer=tok,
        out_dir=out,
        text_field=run.data.text_field,
        cache_dir=run.data.cache_dir,
    )
    return str(out)


def _loaders(
    run: RunConfig, data: _Data, context_length: int
) -> tuple[WindowLoader, dict[str, WindowLoader]]:
    """The training loader and the fixed loaders the loss estimates read."""
    t, d = run.training, run.data
    kind = d.loader if d.loader != "auto" else ("random" if data.prepared else "sequential")
    share = {"train": d.train_ratio, "val": 1 - d.train_ratio}

    def make(split: str, arrays: list[np.ndarray], *, shuffle: bool, seed: int) -> WindowLoader:
        try:
            if kind == "random":
                return RandomWindows(
                    arrays, batch_size=t.batch_size, context_length=context_length, seed=seed
                )
            return SequentialWindows(
                arrays,
                batch_size=t.batch_size,
                context_length=context_length,
                stride=d.stride,
                shuffle=shuffle,
                seed=seed,
            )
        except DataError as exc:
            part = "" if data.prepared else f" ({share[split]:.0%} of {d.source})"
            raise DataError(f"the {split} split{part}: {exc}") from None

    train = make("train", data.train, shuffle=True, seed=t.seed)
    # Evaluations read the same batches every time, so their losses are comparable.
    evals = {
        "train": make("train", data.train, shuffle=False, seed=t.seed + 1),
        "val": make("val", data.val, shuffle=False, seed=t.seed + 2),
    }
    return train, evals


# --- the task -----------------------------------------------------------------------------------


class LanguageModelTask:
    """Next-token prediction on a text: a :class:`~.task.Task` for a GPT.

    ``resume_from`` (a checkpoint of this run) fixes the tokenizer to the run's own;
    ``pretrained`` or ``run.init_from`` starts from pretrained weights, whose tokenizer is
    used unless another is asked for. :attr:`run` is the effective config: the model's
    vocab_size set to the tokenizer's.
    """

    unit = "tokens"

    def __init__(
        self,
        run: RunConfig,
        *,
        tokenizer: Tokenizer | None = None,
        pretrained: tuple[GPTModel, Tokenizer] | None = None,
        resume_from: Path | None = None,
    ) -> None:
        self._start_model: GPTModel | None = None
        self.base_ref: dict[str, Any] | None = None  # a LoRA run's base (see adapters)
        self.model: GPTModel | None = None
        self.trainable = ""
        if resume_from is not None:
            try:
                tokenizer = load_tokenizer(resume_from)  # the weights fix the tokenizer
            except TokenizerError as exc:
                raise CheckpointError(f"{resume_from}: {exc}") from exc
            if run.training.trainable == "lora":  # the adapter sits on the base: load it
                self._load_pretrained(run, pretrained, tokenizer)
        elif pretrained is not None or run.init_from is not None:
            tokenizer = self._load_pretrained(run, pretrained, tokenizer)
        data = _load_data(run, tokenizer)
        self.tokenizer = data.tokenizer
        self.cfg = self._model_config(run, data.tokenizer)
        self.run = dataclasses.replace(run, model=self.cfg)
        self.source = run.data.source
        self.sizes = (sum(len(a) for a in data.train), sum(len(a) for a in data.val))
        self.chars_per_val_token = data.chars_per_val_token
        self.train_loader, self.eval_loaders = _loaders(self.run, data, self.cfg.context_length)
        t = run.training
        self.batches_per_epoch = self.train_loader.batches_per_epoch
        self.eval_batches = t.eval_batches
        self.eval_size = t.eval_batches * len(self.eval_loaders)
        self.flops_per_unit: float | None = flops_per_token(self.cfg)
        self.sample_tokens = t.sample_tokens
        prompt = t.sample_prompt and self.tokenizer.encode(t.sample_prompt)
        self.prompt_ids = prompt or data.val[0][:8].astype(np.int64).tolist()

    def _load_pretrained(
        self,
        run: RunConfig,
        pretrained: tuple[GPTModel, Tokenizer] | None,
        tokenizer: Tokenizer | None,
    ) -> Tokenizer | None:
        from ..pretrained import load_pretrained

        crop = run.crop_context_length if run.model is None else run.model.context_length
        options = {} if crop is None else {"context_length": crop}
        model, own = pretrained or load_pretrained(run.init_from, **options)  # type: ignore[arg-type]
        self._start_model = model
        if run.training.trainable == "lora":
            from ..adapters import base_reference

            self.base_ref = base_reference(model, init_from=str(run.init_from), context_length=crop)
        if tokenizer is None and run.tokenizer.name is None:
            return own  # the pretrained model's own, unless another is asked for
        return tokenizer

    def _model_config(self, run: RunConfig, tok: Tokenizer) -> GPTConfig:
        if self._start_model is not None:
            cfg = self._start_model.cfg
            if tok.vocab_size > cfg.vocab_size:
                raise ConfigError(
                    f"the tokenizer has {tok.vocab_size} ids but the pretrained model only "
                    f"{cfg.vocab_size}: use the model's own tokenizer"
                )
            return cfg
        cfg = run.model
        assert cfg is not None  # RunConfig guarantees a model or init_from
        if cfg.vocab_size != tok.vocab_size:
            log.info("vocab_size %d -> %d (the tokenizer's)", cfg.vocab_size, tok.vocab_size)
            cfg = dataclasses.replace(cfg, vocab_size=tok.vocab_size)
        return cfg

    def build_model(self) -> nn.Module:
        model = self._start_model if self._start_model is not None else GPTModel(self.cfg)
        t = self.run.training
        self.trainable = prepare_for_training(
            model, t.trainable, self.run.lora, pretrained=self._start_model is not None
        )
        self.model = model
        return model

    def batch(self, index: int) -> Batch:
        return self.train_loader.batch(index)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return forward_loss(model, *batch)

    def evaluate(self, model: nn.Module, feed: Feed) -> dict[str, float]:
        n = self.eval_batches
        losses = {
            split: _mean_loss(model, feed(loader.batch(i) for i in range(n)), n)
            for split, loader in self.eval_loaders.items()
        }
        metrics = {
            "eval_train_loss": losses["train"],
            "val_loss": losses["val"],
            "val_ppl": math.exp(min(losses["val"], 50.0)),
        }
        if self.chars_per_val_token:
            # Loss per character makes tokenizers with different token lengths comparable.
            metrics["val_loss_per_char"] = losses["val"] / self.chars_per_val_token
        return metrics

    def sample(self, model: nn.Module, generator: torch.Generator) -> str | None:
        device = next(model.parameters()).device
        idx = torch.tensor([self.prompt_ids], dtype=torch.long, device=device)
        out = generate(
            model,  # type: ignore[arg-type]
            idx,
            self.sample_tokens,
            temperature=0.8,
            top_k=200,
            generator=generator,
        )
        return self.tokenizer.decode(out[0].tolist())

    def save(
        self,
        directory: Path,
        model: nn.Module,
        *,
        weights: dict[str, torch.Tensor] | None,
        metadata: dict[str, Any],
        extra: Callable[[Path], None],
    ) -> Path:
        from ..adapters import save_lm_checkpoint

        return save_lm_checkpoint(
            directory,
            model,  # type: ignore[arg-type]
            self.tokenizer,
            base=self.base_ref,
            metadata=metadata,
            weights=weights,
            extra=extra,
        )

    def load(self, checkpoint: Path) -> dict[str, torch.Tensor]:
        if self.base_ref is not None:
            from ..adapters import resume_weights

            assert self.model is not None
            return resume_weights(checkpoint, self.model, self.base_ref)
        saved, _ = load_checkpoint(checkpoint)
        if saved.cfg != self.cfg:
            raise CheckpointError(
                f"{checkpoint} holds a different model than the run config describes; resume "
                "with the run's own config.yaml"
            )
        return saved.state_dict()  # the tied weight under both names

    def describe(self) -> str:
        train, val = self.sizes
        context = self.cfg.context_length
        return (
            f"{self.source}: {train:,} train / {val:,} val tokens, context {context}; "
            f"{self.trainable}"
        )

    def hints(self, run_dir: Path) -> tuple[str, str]:
        return (
            f"generate with: scratchgpt generate --checkpoint {run_dir} --prompt '...'",
            f"scratchgpt train --resume {run_dir}",
        )


def slow_cpu_evaluation(run: RunConfig, device: torch.device) -> str | None:
    """A warning for an evaluation too big for a CPU, naming the flags to lower; else None.

    The rule: on a CPU, one evaluation (eval_batches x 2 splits x batch_size x context
    tokens, forward only: a third of :func:`~.metrics.flops_per_token`) estimated over
    :data:`CPU_EVAL_SECONDS` at :data:`CPU_FLOPS`.
    """
    if device.type != "cpu" or run.model is None:
        return None
    t, cfg = run.training, run.model
    tokens = t.eval_batches * 2 * t.batch_size * cfg.context_length
    seconds = tokens * flops_per_token(cfg) / 3 / CPU_FLOPS
    if seconds <= CPU_EVAL_SECONDS:
        return None
    return (
        f"each evaluation reads {tokens:,} tokens (training.eval_batches={t.eval_batches} x 2 "
        f"splits x training.batch_size={t.batch_size} x model.context_length="
        f"{cfg.context_length}): about {seconds / 60:.0f} min on a CPU, every "
        f"{t.eval_interval} steps. This config is sized for a GPU; on a CPU lower "
        "--training.eval-batches (e.g. 20), --training.batch-size or --context-length, or "
        "raise --training.eval-interval"
    )


# --- the run ------------------------------------------------------------------------------------


def _resolve_run(
    config: RunConfig | TrainConfig | str | Path | None,
    *,
    data: str | Path | None,
    tokenizer: str | Path | Tokenizer | None,
    vocab_size: int | None,
    model: GPTConfig | str | None,
    init_from: str | Path | tuple[GPTModel, Tokenizer] | None,
    overrides: dict[str, Any] | None,
) -> RunConfig:
    """One RunConfig from the ways train() can be called (file, dataclasses, keywords)."""
    if isinstance(config, (str, Path)):
        run = load_run_config(config, overrides=overrides)
    elif isinstance(config, RunConfig):
        run = config.replace(overrides) if overrides else config
    else:
        run = RunConfig(training=config or TrainConfig())
        if overrides:
            run = run.replace(overrides)
    changes: dict[str, Any] = {}
    if data is not None:
        changes["data"] = dataclasses.replace(run.data, source=str(data))
    if isinstance(tokenizer, (str, Path)) or vocab_size is not None:
        name = str(tokenizer) if isinstance(tokenizer, (str, Path)) else run.tokenizer.name
        changes["tokenizer"] = dataclasses.replace(
            run.tokenizer, name=name, vocab_size=vocab_size or run.tokenizer.vocab_size
        )
    if init_from is not None and (model is not None or vocab_size is not None):
        raise ConfigError(
            "init_from fixes the model's shape and vocabulary: leave out model= and "
            "vocab_size= (load_gpt2(..., context_length=N) crops the context)"
        )
    if model is not None:
        changes["model"] = preset(model) if isinstance(model, str) else model
    if init_from is not None:
        changes["model"] = None
        changes["init_from"] = (
            str(init_from) if isinstance(init_from, (str, Path)) else "(a loaded model)"
        )
    return dataclasses.replace(run, **changes) if changes else run


def train(
    config: RunConfig | TrainConfig | str | Path | None = None,
    *,
    data: str | Path | None = None,
    tokenizer: str | Path | Tokenizer | None = None,
    vocab_size: int | None = None,
    model: GPTConfig | str | None = None,
    out_dir: str | Path | None = None,
    init_from: str | Path | tuple[GPTModel, Tokenizer] | None = None,
    resume: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    stop_at: int | None = None,
    merge: str | Path | None = None,
) -> TrainResult:
    """Train a GPT and save it; returns the run directory, its metrics rows and checkpoints.

    ``config`` is a :class:`RunConfig`, a YAML/JSON file of one, or just the training section
    (:class:`TrainConfig`); ``overrides`` sets fields by dotted name (``{"training.lr":
    3e-4}``). The keywords are shortcuts for the most used fields: ``data`` (a named corpus,
    files, or a directory made by ``scratchgpt prepare``), ``tokenizer`` (a name, a path, or
    a Tokenizer; ``vocab_size`` sizes a "bpe" one trained on the data), ``model`` (a preset
    name or a GPTConfig; its vocab_size becomes the tokenizer's).

    ``init_from`` fine-tunes instead of training from scratch: a GPT-2 name or directory, a
    scratchgpt checkpoint, or a ``(model, tokenizer)`` pair already loaded; the weights then
    fix the shape. ``resume`` continues the run in that directory from its latest checkpoint,
    exactly as if it had never stopped (a run killed before its first checkpoint starts over
    with its config.yaml). ``stop_at`` saves and returns at that step (a later ``resume``
    carries on), for jobs with a time limit. ``merge`` (a LoRA run, ``training.trainable``
    lora) also writes base + adapter there as one plain checkpoint once the run completes.
    """
    resume_dir = Path(resume) if resume is not None else None
    if resume_dir is not None:
        from ..classifier import is_classifier

        saved = read_config_file(saved_config(resume_dir))
        if is_classifier(resume_dir) or "test_ratio" in (saved.get("data") or {}):
            raise ConfigError(
                f"{resume_dir} is a classifier run: continue it with scratchgpt classify train "
                f"--resume {resume_dir} (or train_classifier(resume=...))"
            )
        config, overrides = load_run_config(saved_config(resume_dir), overrides=overrides), None
        out_dir = resume_dir
    run = _resolve_run(
        config,
        data=data,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        model=model,
        init_from=init_from,
        overrides=overrides,
    )

    def make_task(resume_from: Path | None, device: torch.device) -> tuple[Task, RunConfig]:
        task = LanguageModelTask(
            run,
            tokenizer=tokenizer if isinstance(tokenizer, Tokenizer) else None,
            pretrained=init_from if isinstance(init_from, tuple) else None,
            resume_from=resume_from,
        )
        warning = slow_cpu_evaluation(task.run, device)
        if warning:
            log.warning("%s", warning)
        return task, task.run

    run_dir = Path(out_dir) if out_dir is not None else new_run_dir()
    if merge is not None and run.training.trainable != "lora":
        raise ConfigError("--merge writes base + LoRA adapter: it needs --trainable lora")
    result, _ = launch(
        run, make_task, run_dir=run_dir, resume=resume_dir is not None, stop_at=stop_at
    )
    if merge is not None and not result.interrupted and result.steps == result.max_steps:
        from ..merge import merge_adapter

        log.info("merged model: %s", merge_adapter(result.checkpoint, merge))
    return result
