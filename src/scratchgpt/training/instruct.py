"""Instruction fine-tuning (the book's ch. 7) as a task for the :class:`~.trainer.Trainer`,
and :func:`train_instruct`.

A record (an instruction with an optional input and the wanted output, or a whole chat) is
rendered with a prompt template (:mod:`scratchgpt.templates`) into one text ending with
end-of-text, tokenized once, and learned as next-token prediction. Batches are padded to
their longest example; the padding's targets are ignored except the first end-of-text, so the
model learns to stop; ``data.mask_prompt`` ignores the prompt's targets too (loss on the
responses only). The template goes into every checkpoint's metadata, so ``generate
--template saved``, ``chat`` and the server format prompts exactly as in training.

Split in file order as the book does (85/5/10: the file is already shuffled). The validation
loss is evaluated once per epoch unless ``training.eval_interval`` is given; at the end the
test records are answered (greedy) and written with their references to
``RUN/test-responses.json``, the book's ``instruction-data-with-response.json``, which
``scratchgpt judge`` scores. Shapes: B batch, T tokens, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import CheckpointError, load_checkpoint
from ..config import GPTConfig, InstructRunConfig, SamplingConfig, read_config_file
from ..data.instructions import (
    Conversation,
    collate,
    encode_conversation,
    read_instructions,
    split_instructions,
    truncate,
)
from ..data.labelled import length_bucketed_batches
from ..download import cache_directory, cached_download
from ..errors import ConfigError
from ..files import atomic_write_text
from ..generation import Generator
from ..model import GPTModel, Packing, eval_mode
from ..templates import get_template
from ..tokenizers import Tokenizer, get_tokenizer
from .finetune import load_starting_point, prepare_for_training
from .launch import launch, saved_config
from .runs import TrainResult, new_run_dir
from .task import Batch, Feed, Task

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # cross_entropy's default: targets that add nothing to the loss
RESPONSES_FILE = "test-responses.json"
# The book's instruction data (1,100 Alpaca records), from its repository, pinned.
BOOK_DATA_URL = (
    "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/"
    "instruction-data.json"
)
BOOK_DATA_SHA256 = "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944"


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
    row, each with its own positions and attention, so the padding of a batch is not
    computed; and the output layer runs only where a target counts (with --mask-prompt, the
    responses: a quarter of the book's tokens). The loss is the same mean over the same
    targets as without either.
    """
    packing = Packing.plan(lengths, inputs.size(1))
    packed = packing.pack(targets, fill=ignore_index)  # (B, T) -> (G, T)
    counted = packed != ignore_index  # (G, T): the positions whose logits the loss reads
    logits = model(packing.pack(inputs), segments=packing.segments, logits_at=counted)  # (N, V)
    return F.cross_entropy(logits.float(), packed[counted])  # (N, V) vs (N,)


def book_instruction_data(cache_dir: str | Path | None = None) -> Path:
    """The book's instruction-data.json, downloaded once, checked against its sha256."""
    target = cache_directory(cache_dir) / "instruction-data" / "instruction-data.json"
    return cached_download(
        BOOK_DATA_URL,
        target,
        sha256=BOOK_DATA_SHA256,
        name="the book's instruction data",
        hint="Offline? Download instruction-data.json by hand and pass it with --data FILE",
    )


class InstructionTask:
    """Instruction records -> a GPT that answers them: a :class:`~.task.Task`."""

    unit = "tokens"
    flops_per_unit: float | None = None

    def __init__(
        self, run: InstructRunConfig, conversations: Sequence[Conversation], *, source: str
    ) -> None:
        t, d = run.training, run.data
        self.settings, self.source = run, source
        self.template = get_template(d.template)
        digest = json.dumps([[dataclasses.asdict(m) for m in c] for c in conversations])
        self.data_sha256 = hashlib.sha256(digest.encode("utf-8")).hexdigest()
        self.train_set, self.val_set, self.test_set = split_instructions(
            list(conversations), val_ratio=d.val_ratio, test_ratio=d.test_ratio
        )
        if not (self.train_set and self.val_set and self.test_set):
            raise ConfigError(
                f"{source}: {len(conversations)} records are too few to split into training, "
                "validation and test sets"
            )
        self.base: GPTModel | None = None
        self.base_ref: dict[str, Any] | None = None
        self.tokenizer, self.cfg = self._tokenizer_and_config(run)
        self.max_length = min(d.max_length or self.cfg.context_length, self.cfg.context_length)
        self.pad_id = self.tokenizer.eot_id if self.tokenizer.eot_id is not None else 0
        self.mask_prompt = d.mask_prompt
        self.cut: dict[str, int] = {}
        self.train_rows = self._encode(self.train_set, "train")
        self.val_rows = self._encode(self.val_set, "val")
        self.batch_size, self.seed = t.batch_size, t.seed
        lengths = [len(ids) for ids, _ in self.train_rows]
        self.lengths = lengths
        self._epoch: tuple[int, list[list[int]]] = (0, self._batches_of(0))
        self.batches_per_epoch = len(self._epoch[1])
        self.val_batches = self._fixed(self.val_rows)
        n_train = min(len(self.train_rows), t.eval_batches * t.batch_size)
        self.train_eval = self._fixed(self.train_rows[:n_train])
        self.eval_size = len(self.val_batches) + len(self.train_eval)
        training = t
        if run.eval_per_epoch:
            training = dataclasses.replace(t, eval_interval=self.batches_per_epoch)
        self.run = dataclasses.replace(
            run, model=self._model_fields(), training=training, eval_per_epoch=False
        )
        self.model: GPTModel | None = None
        self.trainable = ""

    # --- the model ------------------------------------------------------------------------

    def _tokenizer_and_config(self, run: InstructRunConfig) -> tuple[Tokenizer, GPTConfig]:
        d = run.data
        if run.init_from is not None:
            self.base, own, self.base_ref = load_starting_point(
                run.init_from,
                crop=run.model.get("context_length"),
                lora=run.training.trainable == "lora",
                tokenizer_given=d.tokenizer is not None,
            )
            return own, self.base.cfg
        if not run.model:
            raise ConfigError(
                "an instruction-tuning run needs a model: --init-from NAME_OR_DIR (or "
                "--checkpoint DIR) to tune, or --preset NAME to train one from scratch"
            )
        text = "\n".join(seg.text for c in self.train_set for seg in self.template.render(list(c)))
        tok = get_tokenizer(d.tokenizer or "gpt2", text=text)
        return tok, GPTConfig.from_dict({**run.model, "vocab_size": tok.vocab_size})

    def _model_fields(self) -> dict[str, Any]:
        if self.settings.init_from is not None:
            return dict(self.settings.model)
        return {k: v for k, v in self.cfg.to_dict().items() if k != "vocab_size"}

    def build_model(self) -> nn.Module:
        model = self.base if self.base is not None else GPTModel(self.cfg)
        t = self.settings.training
        self.trainable = prepare_for_training(
            model, t.trainable, self.settings.lora, pretrained=self.base is not None
        )
        self.model = model
        return model

    # --- data -----------------------------------------------------------------------------

    def _encode(
        self, conversations: Sequence[Conversation], split: str
    ) -> list[tuple[list[int], list[bool]]]:
        encoded = [encode_conversation(self.template, c, self.tokenizer) for c in conversations]
        rows, masks, cut = truncate(
            [ids for ids, _ in encoded], [m for _, m in encoded], self.max_length
        )
        self.cut[split] = cut
        return list(zip(rows, masks, strict=True))

    def _batch_of(self, rows: Sequence[tuple[list[int], list[bool]]]) -> Batch:
        ids = [r for r, _ in rows]
        inputs, targets = collate(
            ids,
            [m for _, m in rows],
            pad_id=self.pad_id,
            ignore_index=IGNORE_INDEX,
            mask_prompt=self.mask_prompt,
        )
        lengths = torch.tensor([len(r) - 1 for r in ids], dtype=torch.long)  # real inputs
        return inputs, lengths, targets

    def _batches_of(self, epoch: int) -> list[list[int]]:
        return length_bucketed_batches(self.lengths, self.batch_size, seed=self.seed, epoch=epoch)

    def _fixed(self, rows: Sequence[tuple[list[int], list[bool]]]) -> list[Batch]:
        return [
            self._batch_of(rows[i : i + self.batch_size])
            for i in range(0, len(rows), self.batch_size)
        ]

    def batch(self, index: int) -> Batch:
        epoch, i = divmod(index, self.batches_per_epoch)
        if self._epoch[0] != epoch:
            self._epoch = (epoch, self._batches_of(epoch))
        return self._batch_of([self.train_rows[j] for j in self._epoch[1][i]])

    # --- training and evaluation ---------------------------------------------------------

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return instruction_loss(model, *batch)

    def _mean_loss(self, model: nn.Module, batches: Any) -> float:
        """The mean over every target token of ``batches`` (not a mean of batch means)."""
        total, count = 0.0, 0
        for inputs, lengths, targets in batches:
            n = int((targets != IGNORE_INDEX).sum())
            total += instruction_loss(model, inputs, lengths, targets).item() * n
            count += n
        return total / max(count, 1)

    def evaluate(self, model: nn.Module, feed: Feed) -> dict[str, float]:
        return {
            "val_loss": self._mean_loss(model, feed(self.val_batches)),
            "eval_train_loss": self._mean_loss(model, feed(self.train_eval)),
        }

    def sample(self, model: nn.Module, generator: torch.Generator) -> str | None:
        return None  # the test set's responses are written at the end

    # --- checkpoints ------------------------------------------------------------------------

    def save(
        self,
        directory: Path,
        model: nn.Module,
        *,
        weights: dict[str, torch.Tensor] | None,
        metadata: dict[str, Any],
        extra: Callable[[Path], None],
    ) -> Path:
        about = {
            "template": self.template.to_dict(),
            "data_sha256": self.data_sha256,
            "truncated": self.cut,
        }
        from ..adapters import save_lm_checkpoint

        return save_lm_checkpoint(
            directory,
            model,  # type: ignore[arg-type]
            self.tokenizer,
            base=self.base_ref,
            metadata={**metadata, **about},
            weights=weights,
            extra=extra,
        )

    def load(self, checkpoint: Path) -> dict[str, torch.Tensor]:
        info = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
        digest = (info.get("metadata") or {}).get("data_sha256")
        if digest != self.data_sha256:
            raise CheckpointError(
                f"{checkpoint} was trained on other records than this run's: resume with the "
                "run's own data and config.yaml"
            )
        if self.base_ref is not None:
            from ..adapters import resume_weights

            assert self.model is not None
            return resume_weights(checkpoint, self.model, self.base_ref)
        saved, _ = load_checkpoint(checkpoint)
        if saved.cfg != self.cfg:
            raise CheckpointError(f"{checkpoint} holds another model than this run's")
        return saved.state_dict()

    def describe(self) -> str:
        cut = ", ".join(f"{n} {split}" for split, n in self.cut.items() if n)
        return (
            f"{self.source}: {len(self.train_set):,} training / {len(self.val_set):,} "
            f"validation / {len(self.test_set):,} test records; template {self.template.name}"
            f"{', loss on the responses only' if self.mask_prompt else ''}; {self.trainable}; "
            f"examples cut to {self.max_length} tokens: {cut or 'none'}"
        )

    def hints(self, run_dir: Path) -> tuple[str, str]:
        return (
            f"chat with: scratchgpt chat --checkpoint {run_dir}",
            f"scratchgpt finetune instruct --resume {run_dir}",
        )

    # --- the test set's responses ----------------------------------------------------------

    def respond(self, model: GPTModel, out: Path, *, max_new_tokens: int) -> Path:
        """Answer every test record (greedy) and write them with their references to ``out``:
        the book's instruction-data-with-response.json, each record with a
        ``model_response``."""
        generator = Generator(model, self.tokenizer)
        greedy = SamplingConfig(temperature=0.0)
        records = []
        with eval_mode(model):
            for start in range(0, len(self.test_set), self.batch_size):
                chunk = self.test_set[start : start + self.batch_size]
                prompts = [self.template.prompt(list(c[:-1])) for c in chunk]
                answers = generator.generate_text(
                    prompts, max_new_tokens, sampling=greedy, stop=self.template.stop
                )
                for conversation, answer in zip(chunk, answers, strict=True):
                    records.append(_record(conversation, str(answer).strip()))
        atomic_write_text(out, json.dumps(records, indent=2, ensure_ascii=False) + "\n")
        return out


def _record(conversation: Conversation, answer: str) -> dict[str, Any]:
    """A test record as the book writes it: instruction, input, output, model_response (a
    chat record keeps its messages instead of instruction and input)."""
    *prompt, reference = conversation
    users = [m for m in prompt if m.role == "user"]
    if len(prompt) == 1 and users:
        base: dict[str, Any] = {"instruction": users[0].content, "input": users[0].input}
    else:
        base = {"messages": [dataclasses.asdict(m) for m in prompt]}
    return {**base, "output": reference.content, "model_response": answer}


@dataclass
class InstructResult:
    """A finished instruction-tuning run: where it is, and where the test responses are."""

    run: TrainResult
    responses: Path | None
    n_train: int
    n_val: int
    n_test: int
    empty_outputs: int
    seconds: float

    def summary(self) -> str:
        lines = [self.run.summary()]
        if self.responses is not None:
            lines.append(
                f"test responses: {self.responses} (score them with: scratchgpt judge "
                f"--responses {self.responses} --endpoint URL --model NAME)"
            )
        return "\n".join(lines)


def train_instruct(
    config: InstructRunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    stop_at: int | None = None,
    merge: str | Path | None = None,
) -> InstructResult:
    """Instruction-tune a GPT: read the records, render them with the template, train, and
    answer the test records.

    ``config`` is an :class:`InstructRunConfig`, its plain data or a YAML file of it;
    ``overrides`` sets fields by dotted name (``{"model.init_from": "gpt2", "lora.rank":
    16, "data.mask_prompt": True}``). ``resume`` continues a run exactly; ``stop_at`` saves
    and returns at that step; ``merge`` (a LoRA run) also writes base + adapter there.
    """
    started = time.perf_counter()
    resume_dir = Path(resume) if resume is not None else None
    if resume_dir is not None:
        run = _resolve(saved_config(resume_dir), overrides)
        out_dir = resume_dir
    else:
        run = _resolve(config, overrides)
    if merge is not None and run.training.trainable != "lora":
        raise ConfigError("--merge writes base + LoRA adapter: it needs --trainable lora")
    path = run.data.source or book_instruction_data(run.data.cache_dir)
    data = read_instructions(path)
    if data.empty_outputs:
        log.warning("%s: %d records have an empty response", data.source, data.empty_outputs)

    def make_task(resume_from: Path | None, device: torch.device) -> tuple[Task, Any]:
        task = InstructionTask(run, data.conversations, source=str(path))
        return task, task.run

    run_dir = Path(out_dir) if out_dir is not None else new_run_dir()
    result, task = launch(
        run, make_task, run_dir=run_dir, resume=resume_dir is not None, stop_at=stop_at
    )
    assert isinstance(task, InstructionTask) and task.model is not None
    responses = None
    finished = not result.interrupted and result.steps == result.max_steps
    if finished and run.data.response_tokens:
        responses = task.respond(
            task.model, result.run_dir / RESPONSES_FILE, max_new_tokens=run.data.response_tokens
        )
        log.info("test responses: %s", responses)
    if merge is not None and finished:
        from ..merge import merge_adapter

        log.info("merged model: %s", merge_adapter(result.checkpoint, merge))
    return InstructResult(
        run=result,
        responses=responses,
        n_train=len(task.train_set),
        n_val=len(task.val_set),
        n_test=len(task.test_set),
        empty_outputs=data.empty_outputs,
        seconds=time.perf_counter() - started,
    )


def _resolve(
    config: InstructRunConfig | Mapping[str, Any] | str | Path | None,
    overrides: Mapping[str, Any] | None,
) -> InstructRunConfig:
    from ..config import apply_overrides
    from ..config.finetune import switch_on_lora

    changes = dict(overrides or {})
    if isinstance(config, InstructRunConfig):
        return config.replace(changes) if changes else config
    data = read_config_file(config) if isinstance(config, (str, Path)) else dict(config or {})
    try:
        return InstructRunConfig.from_dict(apply_overrides(data, switch_on_lora(changes)))
    except ConfigError as exc:
        if not isinstance(config, (str, Path)):
            raise
        lines = [f"{config}: {line}" for line in str(exc).splitlines()]
        raise ConfigError("\n".join(lines)) from None
