"""Instruction fine-tuning speed, memory and loss: scratchgpt against Hugging Face TRL's
``SFTTrainer``, one epoch (or its first ``--max-steps`` steps) of the book's ch. 7 Alpaca
data on the same GPT-2 (124M shape), completion-only loss on both sides.

Both sides start from the same weights: random (seeded, no download) in scratchgpt's
GPTModel, written once with :func:`scratchgpt.pretrained.export.export_hf` (with GPT-2's
tokenizer, so TRL finds its pad/eos token there) to a cache directory, from which
transformers loads ``GPT2LMHeadModel``. Dropout is 0 on both sides by default (the book's
fine-tuning setting; ``--dropout`` sets it on both). fp32, CPU.

Data, made once in the parent before any clock starts and read by both workers:
instruction-data.json (in ``--shared-data``, else SCRATCHGPT_SHARED_DATA, else
../shared/data beside the checkout), the book's split (train = the first int(0.85 n)
records), each record as the Alpaca template's prompt
(``TEMPLATES["alpaca"].prompt([Message("user", instruction, input=input)])``, ending with
"### Response:\\n") and its completion (the output, then <|endoftext|>, id 50256), each
tokenized separately with GPT-2's tokenizer (read from gpt2-encoder.json and gpt2-vocab.bpe
there) and concatenated; a row longer than the context is cut to it. Batches of
``--batch-size`` consecutive records in file order, no shuffling on either side.

- Ours: the book's collate (rows padded on the right with 50256 to the batch's longest;
  inputs = padded[:, :-1], targets = padded[:, 1:]; a target past a row's own last token, or
  one that is a prompt token, is -100), then
  :func:`scratchgpt.training.instruct.instruction_loss` (which packs the rows), backward,
  AdamW from ``make_optimizer``, zero the gradients. The collate runs inside the timed step.
- TRL: the same token lists given pre-tokenized (columns ``input_ids`` and
  ``completion_mask``; TRL builds labels = input_ids where the mask is 1, else -100, and
  does not tokenize again), ``completion_only_loss=True``, no packing, no padding-free
  (TRL's default: each batch padded to its longest row), ``max_length=None``, the
  sequential sampler (``train_sampling_strategy="sequential"``, and TRL's own
  ``shuffle_dataset`` off), the same lr / weight decay / betas, constant LR without
  warmup, no gradient clipping (``max_grad_norm=0``), TRL's default optimizer
  (``adamw_torch_fused`` in this transformers; the decay groups are the same: weights and
  embeddings decayed, biases and LayerNorm not), logging every step (the loss of each
  step is read from the logs), no evaluation, no checkpoints, ``report_to="none"``.

Checks that the two sides do the same work: the TRL worker compares its own first batch (from
``trainer.get_train_dataloader()``) with our collate of the same records (``same_batch``:
identical input ids, and labels shifted by one equal to our targets), and each side computes
the first batch's loss before any update (TRL through ``trainer.compute_loss``, ours through
``instruction_loss``): ``same_start`` says whether they agree within 1e-3. After the run the
last step's loss and the mean of the last 10 steps' losses of both sides are given: they
must agree within noise (the same data, weights and optimizer math; only the order of
floating-point sums differs).

Timing: both sides train the same steps; the first ``--warmup`` steps are untimed. The timed
window runs from the end of the last warmup step to the end of the last step (TRL: from a
callback's ``on_step_end``, so TRL's data loading, collation and per-step logging inside its
loop are in the window, as our collate is in ours; model loading, dataset preparation and
the trainer's setup are not). Tokens/s = the padded tokens of the timed batches (B x T per
step, T the batch's longest row, the tensor TRL's collator makes; the same count on both
sides) / the window. ``tokens_per_sec_median_step``: the median of per-step tokens/s, less
moved by a busy machine.

Memory: each side runs in a fresh process. ``peak_rss_mb`` is the process's peak resident set
over its whole life (ru_maxrss: imports, weights, dataset, training); ``train_peak_rss_mb``
the peak from just before training starts (Linux's ``clear_refs`` resets the high-water mark
there).

``--max-steps``: the full epoch (117 steps of 8) takes several seconds a step per side on a
2-core CPU, so the default runs the first 40 steps (about 5 minutes a side there);
``--max-steps 0`` runs the whole epoch.

    python bench/instruct.py                  # gpt2-124M shape, CPU, 40 steps
    python bench/instruct.py --max-steps 0    # the whole epoch
    python bench/instruct.py --quick          # a 2-layer, 64-wide shape: the smoke test's
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import (  # bench/common.py
    current_rss_mb,
    header,
    package_version,
    reset_rss_peak,
    rss_peak_mb,
    shared_data_dir,
    sync,
    write_results,
)

from scratchgpt.config import GPTConfig, preset

EOT_ID = 50256  # GPT-2's <|endoftext|>: the end of every completion, and the pad token
IGNORE = -100
LR, WEIGHT_DECAY, BETAS = 5e-5, 0.1, (0.9, 0.999)  # the book's ch. 7 AdamW (decay as ch. 6)
SEED = 0
TRAIN_SHARE = 0.85  # the book's split: the first 85% of the records train
QUICK_SHAPE = {"emb_dim": 64, "n_heads": 4, "n_layers": 2, "context_length": 256}
DEFAULT_MAX_STEPS = 40
LAST_N = 10  # the final losses are compared as the mean of this many last steps
TARGETS = {"speed": 1.5, "memory": 1.0}  # printed as pass/fail, never asserted


# --- data: made once in the parent, read by both workers ------------------------------------


def make_data(args: argparse.Namespace, cfg: GPTConfig) -> dict[str, Any]:
    """The benchmark's batches: per record the token ids (prompt, completion, end of text)
    and the prompt's length, in file order, cut into batches of ``--batch-size``."""
    from scratchgpt.templates import TEMPLATES, Message
    from scratchgpt.tokenizers import get_tokenizer

    data_dir = shared_data_dir(args.shared_data)
    records = json.loads((data_dir / "instruction-data.json").read_text(encoding="utf-8"))
    train = records[: int(TRAIN_SHARE * len(records))]
    tok = get_tokenizer(data_dir)  # GPT-2's encoder.json + vocab.bpe, nothing downloaded
    template = TEMPLATES["alpaca"]
    rows, prompt_lens, cut = [], [], 0
    for r in train:
        prompt = tok.encode(template.prompt([Message("user", r["instruction"], input=r["input"])]))
        ids = prompt + tok.encode(r["output"]) + [EOT_ID]
        cut += len(ids) > cfg.context_length
        rows.append(ids[: cfg.context_length])
        prompt_lens.append(min(len(prompt), cfg.context_length))
    n_batches = -(-len(rows) // args.batch_size)
    steps = n_batches if args.max_steps <= 0 else min(args.max_steps, n_batches)
    batches = [
        {"rows": rows[i : i + args.batch_size], "prompt_lens": prompt_lens[i : i + args.batch_size]}
        for i in range(0, steps * args.batch_size, args.batch_size)
    ]
    return {
        "records": len(records),
        "train_records": len(rows),
        "rows_cut_to_context": cut,
        "epoch_steps": n_batches,
        "max_len": max(len(r) for r in rows),
        "mean_len": sum(len(r) for r in rows) / len(rows),
        "prompt_share": sum(prompt_lens) / sum(len(r) for r in rows),
        "batches": [b for b in batches if b["rows"]],
    }


def collate(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The book's collate with the prompt masked: inputs (B, T-1), lengths (B,), targets
    (B, T-1), T the batch's longest row."""
    rows, prompt_lens = batch["rows"], batch["prompt_lens"]
    T = max(len(r) for r in rows)
    padded = torch.full((len(rows), T), EOT_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        padded[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    inputs = padded[:, :-1]  # (B, T) -> (B, T-1)
    targets = padded[:, 1:].clone()  # (B, T) -> (B, T-1): target j is token j + 1
    for i, (row, p) in enumerate(zip(rows, prompt_lens, strict=True)):
        targets[i, len(row) - 1 :] = IGNORE  # past the row's own last token
        targets[i, : max(p - 1, 0)] = IGNORE  # tokens 1..p-1 are the prompt's
    lengths = torch.tensor([len(r) - 1 for r in rows], dtype=torch.long)
    return inputs, lengths, targets


def padded_tokens(batch: dict[str, Any]) -> int:
    """B x T: the padded batch both sides are given (TRL's input_ids tensor)."""
    return len(batch["rows"]) * max(len(r) for r in batch["rows"])


# --- the model ---------------------------------------------------------------------------


def model_config(args: argparse.Namespace) -> GPTConfig:
    overrides: dict[str, Any] = {"drop_rate": args.dropout}
    if args.quick:
        overrides.update(QUICK_SHAPE)
    return preset("gpt2-124M", **overrides)


def ensure_export(args: argparse.Namespace, cfg: GPTConfig) -> Path:
    """The HF export of the seeded weights (with GPT-2's tokenizer), cached by shape and seed."""
    from scratchgpt.model import GPTModel
    from scratchgpt.pretrained.export import export_hf
    from scratchgpt.tokenizers import get_tokenizer

    key = hashlib.sha256(json.dumps([cfg.to_dict(), SEED], sort_keys=True).encode()).hexdigest()
    out = args.cache_dir / f"gpt2-lm-{key[:12]}"
    if not (out / "model.safetensors").is_file():
        torch.manual_seed(SEED)
        export_hf(GPTModel(cfg), get_tokenizer(shared_data_dir(args.shared_data)), out)
    return out


# --- the two workers, each in its own process ----------------------------------------------


def run_ours(args: argparse.Namespace, batches: list[dict[str, Any]]) -> dict[str, Any]:
    from scratchgpt.model import GPTModel
    from scratchgpt.training import make_optimizer
    from scratchgpt.training.instruct import instruction_loss

    device = torch.device(args.device)
    cfg = model_config(args)
    torch.manual_seed(SEED)  # the export's weights
    model = GPTModel(cfg).to(device).train()
    optimizer = make_optimizer(
        model, lr=LR, weight_decay=WEIGHT_DECAY, betas=BETAS, device_type=device.type
    )

    def loss_of(batch: dict[str, Any]) -> torch.Tensor:
        inputs, lengths, targets = (t.to(device) for t in collate(batch))
        return instruction_loss(model, inputs, lengths, targets)

    with torch.no_grad():  # before any update: the same weights give the same loss
        first_loss = loss_of(batches[0]).item()
    rss_before_train = current_rss_mb()
    load_peak = rss_peak_mb()
    reset = reset_rss_peak()

    losses, ends = [], []
    start = time.perf_counter()
    for batch in batches:
        loss = loss_of(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())  # the step's loss, as TRL's per-step log gives it
        sync(device)
        ends.append(time.perf_counter())
    train_peak = rss_peak_mb()
    return {
        "impl": "ours",
        "start": start,
        "step_ends": ends,
        "losses": losses,
        "first_loss": first_loss,
        "peak_rss_mb": max(load_peak, train_peak),
        "train_peak_rss_mb": train_peak if reset else None,
        "rss_before_train_mb": rss_before_train,
        "optimizer": "scratchgpt make_optimizer (torch AdamW, "
        + ("fused" if optimizer.defaults.get("fused") else "foreach")
        + ")",
    }


def run_trl(args: argparse.Namespace, batches: list[dict[str, Any]]) -> dict[str, Any]:
    import datasets
    import transformers
    from trl import SFTConfig, SFTTrainer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    drop = {k: args.dropout for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    model = transformers.GPT2LMHeadModel.from_pretrained(args.export, dtype=torch.float32, **drop)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.export)
    rows = [r for b in batches for r in b["rows"]]
    masks = [
        [0] * p + [1] * (len(r) - p)
        for b in batches
        for r, p in zip(b["rows"], b["prompt_lens"], strict=True)
    ]
    dataset = datasets.Dataset.from_dict({"input_ids": rows, "completion_mask": masks})
    device = torch.device(args.device)

    class StepClock(transformers.TrainerCallback):
        """The end time of every optimizer step, and the loss TRL logs for it."""

        def __init__(self) -> None:
            self.start: float | None = None
            self.ends: list[float] = []
            self.losses: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.start is None:
                self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            sync(device)
            self.ends.append(time.perf_counter())

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    clock = StepClock()
    with tempfile.TemporaryDirectory() as out_dir:
        config = SFTConfig(
            output_dir=out_dir,
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=1,
            max_steps=len(batches),
            learning_rate=LR,
            weight_decay=WEIGHT_DECAY,
            adam_beta1=BETAS[0],
            adam_beta2=BETAS[1],
            lr_scheduler_type="constant",
            warmup_steps=0,
            max_grad_norm=0.0,  # no clipping, as ours
            completion_only_loss=True,
            packing=False,
            padding_free=False,
            max_length=None,
            shuffle_dataset=False,
            train_sampling_strategy="sequential",
            logging_steps=1,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=args.device == "cpu",
            seed=SEED,
            dataloader_num_workers=0,
        )
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[clock],
        )
        # TRL's own first batch against our collate of the same records.
        first = next(iter(trainer.get_train_dataloader()))
        inputs, _, targets = collate(batches[0])
        ids, labels = first["input_ids"].cpu(), first["labels"].cpu()
        same_batch = bool(
            ids.shape[1] == inputs.shape[1] + 1
            and torch.equal(ids[:, :-1], inputs)
            and torch.equal(labels[:, 1:], targets)
        )
        trainer.model.train()
        with torch.no_grad():
            first_loss = trainer.compute_loss(trainer.model, first).item()
        trainer._metrics["train"].clear()  # the check's batch is not a training step
        trainer._total_train_tokens = 0
        rss_before_train = current_rss_mb()
        load_peak = rss_peak_mb()
        reset = reset_rss_peak()
        trainer.train()
        train_peak = rss_peak_mb()
        optim = str(trainer.args.optim)
    return {
        "impl": "trl",
        "start": clock.start,
        "step_ends": clock.ends,
        "losses": clock.losses,
        "first_loss": first_loss,
        "same_batch": same_batch,
        "peak_rss_mb": max(load_peak, train_peak),
        "train_peak_rss_mb": train_peak if reset else None,
        "rss_before_train_mb": rss_before_train,
        "optimizer": f"transformers Trainer optim={optim.split('.')[-1].lower()}",
    }


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    data = json.loads(Path(args.data).read_text(encoding="utf-8"))
    batches = data["batches"]
    raw = (run_ours if args.worker == "ours" else run_trl)(args, batches)
    ends, losses = raw.pop("step_ends"), raw.pop("losses")
    if len(ends) != len(batches) or len(losses) != len(batches):
        raise SystemExit(
            f"{args.worker}: {len(ends)} step ends and {len(losses)} losses for "
            f"{len(batches)} steps"
        )
    w = min(args.warmup, len(batches) - 1)
    window_start = ends[w - 1] if w > 0 else raw["start"]
    window = ends[-1] - window_start
    tokens = sum(padded_tokens(b) for b in batches[w:])
    step_starts = [raw.pop("start"), *ends[:-1]]
    per_step = [
        padded_tokens(b) / (end - begin)
        for b, begin, end in zip(batches, step_starts, ends, strict=True)
    ][w:]
    return {
        **raw,
        "steps": len(batches),
        "timed_steps": len(batches) - w,
        "window_s": window,
        "step_s": window / (len(batches) - w),
        "padded_tokens_timed": tokens,
        "tokens_per_sec": tokens / window,
        "tokens_per_sec_median_step": statistics.median(per_step),
        "last_loss": losses[-1],
        f"mean_loss_last_{LAST_N}": statistics.fmean(losses[-LAST_N:]),
        "losses": losses,
        "threads": torch.get_num_threads(),
    }


# --- the parent: one process per side, then the comparison ---------------------------------


def run_side(args: argparse.Namespace, impl: str) -> dict[str, Any]:
    """One side in a fresh process: its last stdout line is its JSON row."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", impl]
    command += ["--data", str(args.data), "--export", str(args.export)]
    command += ["--dropout", str(args.dropout)]
    for flag in ("device", "threads", "batch_size", "warmup"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    if args.quick:
        command.append("--quick")
    done = subprocess.run(command, capture_output=True, text=True)
    sys.stderr.write(done.stderr[-4000:])
    if done.returncode != 0:
        raise SystemExit(f"{impl} failed: exit {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(ours: dict[str, Any], trl: dict[str, Any]) -> dict[str, Any]:
    """Speed = ours tokens/s / TRL's (> 1: ours faster); memory = ours / TRL (< 1: ours
    smaller); the losses at the start and the end; and whether the targets are met."""
    last = f"mean_loss_last_{LAST_N}"
    out: dict[str, Any] = {
        "compare": "ours vs trl",
        "speed_ratio": ours["tokens_per_sec"] / trl["tokens_per_sec"],
        "speed_ratio_median_step": ours["tokens_per_sec_median_step"]
        / trl["tokens_per_sec_median_step"],
        "memory_ratio": ours["peak_rss_mb"] / trl["peak_rss_mb"],
        "first_loss_diff": abs(ours["first_loss"] - trl["first_loss"]),
        "same_batch": trl["same_batch"],
        "last_loss_diff": abs(ours["last_loss"] - trl["last_loss"]),
        f"{last}_diff": abs(ours[last] - trl[last]),
        "max_step_loss_diff": max(
            abs(a - b) for a, b in zip(ours["losses"], trl["losses"], strict=True)
        ),
    }
    out["same_start"] = out["first_loss_diff"] < 1e-3
    if ours.get("train_peak_rss_mb") and trl.get("train_peak_rss_mb"):
        out["train_memory_ratio"] = ours["train_peak_rss_mb"] / trl["train_peak_rss_mb"]
    checks = {
        f"tokens/s >= {TARGETS['speed']}x TRL's": out["speed_ratio"] >= TARGETS["speed"],
        "peak memory <= TRL's": out["memory_ratio"] <= TARGETS["memory"],
    }
    out["targets"] = {k: "pass" if v else "fail" for k, v in checks.items()}
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--max-steps",
        type=int,
        default=DEFAULT_MAX_STEPS,
        help=f"train the epoch's first N steps (default {DEFAULT_MAX_STEPS}; 0: the whole epoch)",
    )
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    parser.add_argument("--dropout", type=float, default=0.0, help="on both sides (default 0)")
    parser.add_argument("--quick", action="store_true", help="2 layers x 64 wide: a smoke run")
    parser.add_argument(
        "--shared-data", type=Path, help="directory of instruction-data.json and GPT-2's files"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "scratchgpt-bench-instruct",
        help="where the HF export of the seeded weights is kept between runs",
    )
    parser.add_argument(
        "--out", type=Path, help="write the results here instead of bench/results/ (tests)"
    )
    parser.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick and args.max_steps == DEFAULT_MAX_STEPS:
        args.max_steps, args.warmup = 4, 1
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)), flush=True)
        return {}
    cfg = model_config(args)
    args.export = ensure_export(args, cfg)
    data = make_data(args, cfg)
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        args.data = Path(tmp) / "batches.json"
        args.data.write_text(json.dumps(data), encoding="utf-8")
        for impl in ("ours", "trl"):
            rows.append(run_side(args, impl))
            brief = {k: v for k, v in rows[-1].items() if k != "losses"}
            print(json.dumps({"bench": "instruct", **brief}), flush=True)
    ratio = compare(*rows)
    print(json.dumps({"bench": "instruct", **ratio}), flush=True)

    device = torch.device(args.device)
    batches = data.pop("batches")
    result = {
        **header("instruct", device),
        "peer": {name: package_version(name) for name in ("trl", "transformers", "datasets")},
        "model": cfg.to_dict(),
        "shape": "quick" if args.quick else "gpt2-124M",
        "weights": f"random, seed {SEED}; TRL loads their export_hf export",
        "data": {"file": "instruction-data.json", "template": "alpaca", **data},
        "batch_size": args.batch_size,
        "steps": len(batches),
        "warmup": args.warmup,
        "batch_lengths": [max(len(r) for r in b["rows"]) for b in batches],
        "order": "file order, no shuffling (TRL: train_sampling_strategy='sequential')",
        "loss": "completion-only: mean cross-entropy over the response tokens and <|endoftext|>",
        "dropout": args.dropout,
        "optimizer": f"AdamW lr {LR} constant, weight decay {WEIGHT_DECAY} (dim >= 2), "
        f"betas {BETAS}, no clipping",
        "precision": "fp32",
        "timing": "from the end of the last warmup step to the end of the last step; "
        "TRL's from a callback's on_step_end",
        "tokens_per_sec_counts": "padded tokens (B x T per step, T the batch's longest row)",
        "peak_mem_note": "peak_rss_mb: ru_maxrss of the side's own process, its whole life; "
        "train_peak_rss_mb: the peak from just before the first step on",
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "loadavg_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        "rows": [*rows, ratio],
    }
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    else:
        write_results(result, device)
    return result


if __name__ == "__main__":
    main()
