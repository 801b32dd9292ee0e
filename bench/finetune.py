"""Fine-tuning speed and memory: scratchgpt against Hugging Face transformers + PEFT, training
the same GPT-2 (124M shape) as a two-class SMS spam classifier.

Both sides start from the same weights: random (seeded, no download) in scratchgpt's
GPTModel, written once with :func:`scratchgpt.pretrained.export.export_hf` to a cache
directory, from which transformers loads ``GPT2ForSequenceClassification`` (pad id 50256,
so it pools the last non-pad token, as :func:`scratchgpt.model.last_token_logits` does).
The class heads get the same seeded weights (ours also has a bias, set to zero; transformers'
``score`` has none), so the first loss of the two sides must agree: each row carries it and
the comparison row says whether it did, which checks that the same model is being timed.

The settings, each ours against the peer:

- ``full``: every parameter trains (transformers alone);
- ``last-block``: the last transformer block, the final LayerNorm and the head train
  (``prepare_for_training(model, "last-block", ...)``; the same freezing by hand on the
  transformers model);
- ``lora``: rank 16, alpha 16, no adapter dropout, on every Linear in the blocks, head
  trained in full (PEFT's ``get_peft_model`` with c_attn, c_proj, c_fc and
  ``modules_to_save=["score"]``). The trainable counts differ, and are reported: our
  query, key and value have an adapter each (3 A's of 16 x 768), where PEFT has one rank-16
  adapter on the fused c_attn (one A of 16 x 768, one B of 2,304 x 16). No PEFT setting
  matches ours exactly: rank 48 on c_attn has our A's but a dense 2,304 x 48 B (three
  times our block-diagonal B's), so it is not run;
- ``padding`` (ours alone, LoRA): every batch padded to its own longest text ("longest",
  the default of every other row) against every batch padded to the longest text of the
  whole data set ("max", the book's way, ch. 6). The step-time ratio is what picks our
  default padding.

A step: forward over one batch (B texts padded on the right with 50256), the class logits
of each text's last real token, cross-entropy, backward, AdamW (lr 5e-5, weight decay 0.1
on weights of dim >= 2, betas 0.9 / 0.999, built by scratchgpt's ``make_optimizer`` on both
sides), zero the gradients. No gradient clipping (the book's classifier loop has none), no
attention mask (padding sits to the right of every real token, where causal attention
cannot let it change the pooled token). Where the sides differ is how the batch is run:
transformers computes every padded position, while ours packs the batch's texts into as few
rows as fit (``scratchgpt.model.Packing``: first-fit rows as wide as the longest text,
each text with its own positions and a block-diagonal causal mask), so the same texts cost
fewer Linear rows; the same first loss on both sides shows the math is unchanged. Dropout
is 0 on both sides by default (the book's
fine-tuning setting; ``--dropout`` sets it on both). fp32 on the CPU.

Data: sms-spam.tsv, LABEL<TAB>TEXT (in ``--shared-data``, else SCRATCHGPT_SHARED_DATA, else
../shared/data beside the checkout), tokenized with tiktoken's gpt2 encoding read from
GPT-2's encoder.json and vocab.bpe there (nothing is downloaded), shuffled with a seed; the
first ``max(warmup, steps)`` batches of ``--batch-size`` texts are made before any clock
starts and are the same for every setting. Every timed window runs the same ``--steps``
batches, so windows (and sides) time the same work; the best of ``--repeats`` windows
counts, the median is given too. Tokens/s counts the padded batch's tokens (B x T per
step, T the batch's padded length) on both sides: the same input per second.

Each row runs in a fresh process so its memory is its own. ``peak_rss_mb`` is the process's
peak resident set size over its whole life (Python, torch, transformers/PEFT when imported,
loading the weights, training); ``train_peak_rss_mb`` is the peak from just before the first
step on (Linux's ``clear_refs`` resets the high-water mark there), i.e. training alone.

    python bench/finetune.py                  # all settings, gpt2-124M shape, CPU
    python bench/finetune.py --quick          # a 2-layer, 64-wide shape: the smoke test's
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
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
from torch import nn

from scratchgpt.config import GPTConfig, LoRAConfig, preset
from scratchgpt.model import GPTModel, add_class_head, last_token_logits
from scratchgpt.training import make_optimizer
from scratchgpt.training.finetune import prepare_for_training

PAD_ID = 50256  # GPT-2's <|endoftext|>, the pad token of the book's classifier
LABELS = {"ham": 0, "spam": 1}
LR, WEIGHT_DECAY, BETAS = 5e-5, 0.1, (0.9, 0.999)  # the book's ch. 6 AdamW
LORA_RANK, LORA_ALPHA = 16, 16.0
SEED = 0
QUICK_SHAPE = {"emb_dim": 64, "n_heads": 4, "n_layers": 2, "context_length": 256}
# (setting, ours' implementation, the peer's): the peer of "padding" is ours with "max".
SETTINGS = {
    "full": ("ours", "transformers"),
    "last-block": ("ours", "transformers"),
    "lora": ("ours", "peft"),
    "padding": ("ours", "ours"),
}
TARGETS = {  # what each comparison should reach (printed as pass/fail, never asserted)
    "full": {"speed": 1.0},
    "lora": {"speed": 1.2, "memory": 1.0, "trainable_share": 0.03},
}


# --- data: made once in the parent, read by every worker -----------------------------------


def gpt2_tokenizer(data_dir: Path, cache: Path) -> Any:
    """tiktoken's gpt2 encoding without a download: GPT-2's two files put in a tiktoken
    cache under the names tiktoken gives its download addresses (the SHA-1 of each)."""
    base = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
    urls = {"gpt2-encoder.json": base + "encoder.json", "gpt2-vocab.bpe": base + "vocab.bpe"}
    cache.mkdir(parents=True, exist_ok=True)
    for name, url in urls.items():
        target = cache / hashlib.sha1(url.encode()).hexdigest()
        if not target.is_file():
            shutil.copy(data_dir / name, target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    from scratchgpt.tokenizers import get_tokenizer

    return get_tokenizer("gpt2")


def make_data(args: argparse.Namespace, cfg: GPTConfig, cache: Path) -> dict[str, Any]:
    """The benchmark's batches: token rows (cut to the context length) and labels, from a
    seeded shuffle of the SMS file; and the longest row of the whole file ("max" padding)."""
    from scratchgpt.data.labelled import read_labelled_file

    data_dir = shared_data_dir(args.shared_data)
    examples = read_labelled_file(data_dir / "sms-spam.tsv")
    tok = gpt2_tokenizer(data_dir, cache / "tiktoken")
    rows = [tok.encode(ex.text)[: cfg.context_length] for ex in examples]
    labels = [LABELS[ex.label] for ex in examples]
    order = list(range(len(rows)))
    random.Random(SEED).shuffle(order)
    n_batches = max(args.warmup, args.steps)
    batches = []
    for b in range(n_batches):
        idx = order[b * args.batch_size : (b + 1) * args.batch_size]
        batches.append({"rows": [rows[i] for i in idx], "labels": [labels[i] for i in idx]})
    return {
        "texts": len(rows),
        "max_len": max(len(r) for r in rows),
        "mean_len": sum(len(r) for r in rows) / len(rows),
        "batches": batches,
    }


def padded(batch: dict[str, Any], width: int | None) -> tuple[torch.Tensor, ...]:
    """ids (B, T) padded on the right with PAD_ID to ``width`` (None: the batch's longest),
    lengths (B,) and labels (B,)."""
    rows = batch["rows"]
    T = width or max(len(r) for r in rows)
    ids = torch.full((len(rows), T), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    return ids, lengths, torch.tensor(batch["labels"], dtype=torch.long)


# --- the model, on both sides ------------------------------------------------------------


def model_config(args: argparse.Namespace) -> GPTConfig:
    overrides: dict[str, Any] = {"drop_rate": args.dropout}
    if args.quick:
        overrides.update(QUICK_SHAPE)
    return preset("gpt2-124M", **overrides)


def export_dir(args: argparse.Namespace, cfg: GPTConfig) -> Path:
    """The cached HF export of the seeded weights, keyed by the shape and the seed."""
    key = hashlib.sha256(json.dumps([cfg.to_dict(), SEED], sort_keys=True).encode()).hexdigest()
    return args.cache_dir / f"gpt2-{key[:12]}"


def ensure_export(args: argparse.Namespace, cfg: GPTConfig) -> Path:
    from scratchgpt.pretrained.export import export_hf

    out = export_dir(args, cfg)
    if not (out / "model.safetensors").is_file():
        torch.manual_seed(SEED)
        export_hf(GPTModel(cfg), None, out)
    return out


def head_weight(cfg: GPTConfig) -> torch.Tensor:
    """The class head's weight (2, C), the same on both sides."""
    gen = torch.Generator().manual_seed(SEED + 1)
    return torch.randn(2, cfg.emb_dim, generator=gen) * 0.02


def build_ours(args: argparse.Namespace, cfg: GPTConfig) -> tuple[nn.Module, Any]:
    torch.manual_seed(SEED)  # the export's weights
    model = add_class_head(GPTModel(cfg), 2)
    with torch.no_grad():
        model.out_head.weight.copy_(head_weight(cfg))
        model.out_head.bias.zero_()  # transformers' score has no bias
    trainable = {"full": "all", "last-block": "last-block"}.get(args.setting, "lora")
    lora = LoRAConfig(rank=LORA_RANK, alpha=LORA_ALPHA, dropout=0.0)
    prepare_for_training(model, trainable, lora, new_head=True)

    def forward(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return last_token_logits(model, ids, lengths)  # (B, 2)

    return model, forward


def build_peer(args: argparse.Namespace, cfg: GPTConfig) -> tuple[nn.Module, Any]:
    import transformers

    transformers.logging.set_verbosity_error()  # "weights not used/newly initialised" notes
    transformers.logging.disable_progress_bar()
    drop = {k: args.dropout for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    model = transformers.GPT2ForSequenceClassification.from_pretrained(
        args.export, num_labels=2, pad_token_id=PAD_ID, **drop
    )
    with torch.no_grad():
        model.score.weight.copy_(head_weight(cfg))
    if args.setting == "last-block":
        model.requires_grad_(False)
        for part in (model.transformer.h[-1], model.transformer.ln_f, model.score):
            part.requires_grad_(True)
    elif args.setting == "lora":
        import peft

        config = peft.LoraConfig(
            r=LORA_RANK,
            lora_alpha=LORA_ALPHA,
            lora_dropout=0.0,
            target_modules=["c_attn", "c_proj", "c_fc"],
            modules_to_save=["score"],
            fan_in_fan_out=True,  # GPT-2's Conv1D stores weights as (in, out)
            task_type="SEQ_CLS",
        )
        model = peft.get_peft_model(model, config)

    def forward(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return model(input_ids=ids).logits  # (B, 2): pooled at the last non-pad token

    return model, forward


def peer_name(setting: str) -> str:
    return "peft" if setting == "lora" else "transformers"


# --- one setting, in its own process -----------------------------------------------------


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cfg = model_config(args)
    data = json.loads(Path(args.data).read_text(encoding="utf-8"))
    width = data["max_len"] if args.padding == "max" else None
    batches = [tuple(t.to(device) for t in padded(b, width)) for b in data["batches"]]

    model, forward = (build_ours if args.worker == "ours" else build_peer)(args, cfg)
    model.to(device).train()
    optimizer = make_optimizer(
        model, lr=LR, weight_decay=WEIGHT_DECAY, betas=BETAS, device_type=device.type
    )
    params = list(model.parameters())  # a shared Parameter once
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)

    def step(ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(forward(ids, lengths), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    with torch.no_grad():  # before any update: the same weights give the same loss
        ids, lengths, labels = batches[0]
        first_loss = F.cross_entropy(forward(ids, lengths), labels).item()
    rss_before_train = current_rss_mb()
    load_peak = rss_peak_mb()
    reset = reset_rss_peak()

    start = time.perf_counter()
    for i in range(args.warmup):
        step(*batches[i % len(batches)])
    sync(device)
    warmup_s = time.perf_counter() - start
    windows = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for i in range(args.steps):
            loss = step(*batches[i])
        sync(device)
        windows.append(time.perf_counter() - start)

    tokens = sum(batches[i][0].numel() for i in range(args.steps))  # padded: B x T each
    real = sum(int(batches[i][1].sum()) for i in range(args.steps))
    best, median = min(windows), statistics.median(windows)
    train_peak = rss_peak_mb()
    row = {
        "setting": args.setting,
        "impl": args.worker
        if args.worker == "ours"
        else ("peft" if args.setting == "lora" else "transformers"),
        "padding": args.padding,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_share": trainable / total,
        "step_s": best / args.steps,
        "step_s_median": median / args.steps,
        "tokens_per_sec": tokens / best,
        "tokens_per_sec_median": tokens / median,
        "padded_tokens_per_window": tokens,
        "real_tokens_per_window": real,
        "peak_rss_mb": max(load_peak, train_peak),
        "train_peak_rss_mb": train_peak if reset else None,
        "rss_before_train_mb": rss_before_train,
        "warmup_s": warmup_s,
        "first_loss": first_loss,
        "last_loss": loss.item(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        row["peak_cuda_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


# --- the parent: one process per row, then the comparisons ---------------------------------


def run_row(args: argparse.Namespace, setting: str, impl: str, padding: str) -> dict[str, Any]:
    """One row in a fresh process: its last stdout line is its JSON row."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", impl]
    command += ["--setting", setting, "--padding", padding, "--data", str(args.data)]
    command += ["--export", str(args.export), "--dropout", str(args.dropout)]
    for flag in ("device", "threads", "batch_size", "steps", "warmup", "repeats"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    if args.quick:
        command.append("--quick")
    done = subprocess.run(command, capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{setting} ({impl}, {padding} padding) failed: exit {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(setting: str, ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    """Speed = peer step time / ours (> 1: ours faster); memory = ours / peer (< 1: ours
    smaller); and whether the targets are met."""
    out: dict[str, Any] = {
        "setting": setting,
        "compare": f"{ours['impl']}/{ours['padding']} vs {peer['impl']}/{peer['padding']}",
        "speed_ratio": peer["step_s"] / ours["step_s"],
        "speed_ratio_median": peer["step_s_median"] / ours["step_s_median"],
        "memory_ratio": ours["peak_rss_mb"] / peer["peak_rss_mb"],
        "first_loss_diff": abs(ours["first_loss"] - peer["first_loss"]),
    }
    if ours.get("train_peak_rss_mb") and peer.get("train_peak_rss_mb"):
        out["train_memory_ratio"] = ours["train_peak_rss_mb"] / peer["train_peak_rss_mb"]
    if setting != "padding":  # the same weights and batches: the same first loss
        out["same_start"] = out["first_loss_diff"] < 1e-3
    target = TARGETS.get(setting, {})
    checks = {}
    if "speed" in target:
        checks[f"speed >= {target['speed']}x"] = out["speed_ratio"] >= target["speed"]
    if "memory" in target:
        checks["peak memory <= peer's"] = out["memory_ratio"] <= target["memory"]
    if "trainable_share" in target:
        share = target["trainable_share"]
        checks[f"trainable share < {share:.0%}"] = ours["trainable_share"] < share
    if checks:
        out["targets"] = {k: "pass" if v else "fail" for k, v in checks.items()}
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per window")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows; the best counts")
    parser.add_argument("--dropout", type=float, default=0.0, help="on both sides (default 0)")
    parser.add_argument(
        "--settings",
        default=",".join(SETTINGS),
        help=f"comma list of {', '.join(SETTINGS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="2 layers x 64 wide: a smoke run")
    parser.add_argument(
        "--shared-data", type=Path, help="directory of sms-spam.tsv and GPT-2's files"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "scratchgpt-bench-finetune",
        help="where the HF export of the seeded weights is kept between runs",
    )
    parser.add_argument(
        "--out", type=Path, help="write the results here instead of bench/results/ (tests)"
    )
    parser.add_argument("--worker", choices=["ours", "transformers"], help=argparse.SUPPRESS)
    parser.add_argument("--setting", choices=list(SETTINGS), help=argparse.SUPPRESS)
    parser.add_argument(
        "--padding", choices=["longest", "max"], default="longest", help=argparse.SUPPRESS
    )
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.repeats = 1, 1, 1
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)), flush=True)
        return {}
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown settings {unknown}: choose from {', '.join(SETTINGS)}")
    if "lora" not in settings and "padding" in settings:
        settings.insert(0, "lora")  # padding reuses the LoRA row as its "longest" side
    cfg = model_config(args)
    args.export = ensure_export(args, cfg)
    data = make_data(args, cfg, args.cache_dir)
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        args.data = Path(tmp) / "batches.json"
        args.data.write_text(json.dumps(data), encoding="utf-8")
        done: dict[tuple[str, str], dict[str, Any]] = {}
        for setting in settings:
            if setting == "padding":
                ours = done[("lora", "ours")]
                peer = run_row(args, "lora", "ours", "max")
            else:
                ours = run_row(args, setting, "ours", "longest")
                peer = run_row(args, setting, "transformers", "longest")
                done[(setting, "ours")] = ours
                for row in (ours, peer):
                    rows.append(row)
                    print(json.dumps({"bench": "finetune", **row}), flush=True)
            if setting == "padding":
                rows.append({**peer, "setting": "padding"})
                print(json.dumps({"bench": "finetune", **rows[-1]}), flush=True)
            ratio = compare(setting, ours, peer)
            rows.append(ratio)
            print(json.dumps({"bench": "finetune", **ratio}), flush=True)

    device = torch.device(args.device)
    lengths = [len(r) for b in data["batches"] for r in b["rows"]]
    result = {
        **header("finetune", device),
        "peer": {"transformers": package_version("transformers"), "peft": package_version("peft")},
        "model": cfg.to_dict(),
        "shape": "quick" if args.quick else "gpt2-124M",
        "weights": f"random, seed {SEED}; the HF side loads their export_hf export",
        "data": f"sms-spam.tsv: {data['texts']} texts, longest {data['max_len']} tokens, "
        f"mean {data['mean_len']:.1f}",
        "batch_size": args.batch_size,
        "batch_lengths": [max(len(r) for r in b["rows"]) for b in data["batches"]],
        "mean_text_tokens_in_batches": sum(lengths) / len(lengths),
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "dropout": args.dropout,
        "optimizer": f"AdamW lr {LR}, weight decay {WEIGHT_DECAY} (dim >= 2), betas {BETAS}",
        "lora": {"rank": LORA_RANK, "alpha": LORA_ALPHA, "dropout": 0.0, "targets": "all"},
        "precision": "fp32" if device.type == "cpu" else "fp32 (no autocast)",
        "timing": "best of repeats windows of the same steps batches (median also given)",
        "tokens_per_sec_counts": "padded tokens (B x T per step)",
        "peak_mem_note": "peak_rss_mb: ru_maxrss of the row's own process, its whole life; "
        "train_peak_rss_mb: the peak from just before the first step on",
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "loadavg_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        "rows": rows,
    }
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    else:
        write_results(result, device)
    return result


if __name__ == "__main__":
    main()
