"""Sample efficiency on a CPU: how soon a run reaches a validation loss, scratchgpt against
karpathy/nanoGPT's character-level Shakespeare recipe for a CPU (issue 17).

Contenders, one after the other, each in its own process, on the same data split:

- ``nanogpt``: its README's CPU line exactly (README_COMMAND, checked to be in that README)
  in a checkout at ``--nanogpt`` (default .peers/nanoGPT: ignored by git, never committed).
- ``ours-a``: the same model and settings, ``python -m scratchgpt train`` on a run config
  made from RECIPE (nanoGPT's effective settings: train.py's defaults, then
  config/train_shakespeare_char.py, then the README's flags; re-read from those files when
  the checkout is there, and any difference stops the run) through OURS_A. Not matched,
  for want of a setting: our GELU is the tanh form (theirs exact); our warmup is lr (s+1)/100
  (theirs lr (s+1)/101); our evaluations read the same 20 batches each time (theirs 20 new
  ones); our AdamW is the fused kernel (theirs only on CUDA); nanoGPT trains one step after
  its last evaluation (2001 steps, ours 2000). Samples off (nanoGPT writes none); both save
  checkpoints as they go.
- ``ours-b``: a shipped config (``--config-b``; skipped with a note while it does not exist)
  as it is, but for what keeps the measurement the same: the same text, train_ratio 0.9,
  char tokenizer, CPU, 20 evaluation batches, samples off. ``--eval-interval-b`` evaluates
  more often, for a finer time to target; the evaluations' time is in its wall time.

Data: the shared tinyshakespeare.txt (``--shared-data``, else SCRATCHGPT_SHARED_DATA, else
../shared/data) is copied to nanoGPT's data/shakespeare_char/input.txt and its prepare.py run
(no download then): the sorted unique characters as vocabulary (65), train = the first
int(0.9 n) characters, val = the rest. Our char tokenizer has the same alphabet and our
trainer cuts its ids at int(0.9 n); ``split.same_as_nanogpt`` checks that our two halves
equal nanoGPT's train.bin and val.bin, id for id.

Measured per contender: wall time, subprocess start to exit (imports, data, training,
evaluations, checkpoints); each evaluation's losses, stamped with the seconds since the
start when it appeared (nanoGPT's "step N: ..." line on its unbuffered stdout, our
metrics.jsonl row; both polled every POLL_S); tokens/s over the wall time, and from the
median step time each side reports (nanoGPT's "iter N: ... time", our step_ms); peak RSS
(the child's ru_maxrss, from os.wait4). ``reaches_nanogpt_final``: when a run's val loss
first reaches nanoGPT's final one, linear in time between the evaluations around it. fp32,
the same thread count on every side (OMP_NUM_THREADS = ``--threads``, default torch's).
Targets, printed and never asserted: ours-a's wall time within 5% of nanoGPT's; ours-b
reaches nanoGPT's final val loss in at most half nanoGPT's wall time.

    git clone https://github.com/karpathy/nanoGPT .peers/nanoGPT
    python bench/sample_efficiency.py                        # all three, ~2 min each
    python bench/sample_efficiency.py --eval-interval-b 50   # a finer time to target for b
    python bench/sample_efficiency.py --max-iters 100 --contenders nanogpt,ours-a  # sanity
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from common import ROOT, header, shared_data_dir, write_results  # bench/common.py

README_COMMAND = (
    "python train.py config/train_shakespeare_char.py --device=cpu --compile=False "
    "--eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 "
    "--n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0"
)
# nanoGPT's effective settings for that line (train.py's defaults, then the config file, then
# the flags), in its names and its --key=value form.
RECIPE_TEXT = (
    "n_layer=4 n_head=4 n_embd=128 block_size=64 batch_size=12 gradient_accumulation_steps=1 "
    "dropout=0.0 bias=False learning_rate=1e-3 min_lr=1e-4 warmup_iters=100 max_iters=2000 "
    "lr_decay_iters=2000 beta1=0.9 beta2=0.99 weight_decay=0.1 grad_clip=1.0 eval_interval=250 "
    "eval_iters=20"
)
# Our run config for it, as our --section.field overrides: a recipe setting in braces, else
# nanoGPT's fixed choice (tied head, GPT-2's init, learned positions, LayerNorm, GELU, SDPA).
# Our cosine ends at max_steps: the recipe's lr_decay_iters is its max_iters.
OURS_A = (
    "model.preset=None model.context_length={block_size} model.emb_dim={n_embd} "
    "model.n_heads={n_head} model.n_layers={n_layer} model.drop_rate={dropout} "
    "model.bias={bias} model.qkv_bias={bias} model.tie_weights=True model.init=gpt2 "
    "model.pos_encoding=learned model.norm=layernorm model.mlp=gelu model.attn_impl=sdpa "
    "data.train_ratio={train_share} data.loader=random tokenizer.name=char "
    "training.max_steps={max_iters} training.batch_size={batch_size} "
    "training.grad_accum={gradient_accumulation_steps} training.lr={learning_rate} "
    "training.min_lr={min_lr} training.warmup_steps={warmup_iters} "
    "training.weight_decay={weight_decay} training.beta1={beta1} training.beta2={beta2} "
    "training.grad_clip={grad_clip} training.eval_interval={eval_interval} "
    "training.eval_batches={eval_iters} training.log_interval=1 training.sample_interval=0 "
    "training.precision=fp32 training.compile=False training.device=cpu training.seed=1337"
)
CONTENDERS = ("nanogpt", "ours-a", "ours-b")
TEXT_FILE = "tinyshakespeare.txt"
TRAIN_SHARE = 0.9  # nanoGPT's prepare.py: the first 90% of the characters train
TARGETS = {"a_wall_ratio": 1.05, "b_reach_ratio": 0.5}
POLL_S = 0.02
STEP_LINE = re.compile(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)")
ITER_LINE = re.compile(r"iter (\d+): loss ([\d.]+), time ([\d.]+)ms")


# --- the recipe: nanoGPT's settings and ours ----------------------------------------------------


def literal_assignments(path: Path) -> dict[str, Any]:
    """The module-level ``name = literal`` assignments of a Python file, read without running
    it (nanoGPT's settings are such assignments; expressions such as its dtype are left out)."""
    out: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def key_values(text: str) -> dict[str, Any]:
    """``key=value`` words (``--`` optional) as a dict; each value a Python literal where it
    reads as one, else the string (nanoGPT's configurator's rule)."""
    out: dict[str, Any] = {}
    for word in text.split():
        key, value = word.removeprefix("--").split("=", 1)
        try:
            out[key] = ast.literal_eval(value)
        except (SyntaxError, ValueError):
            out[key] = value
    return out


RECIPE: dict[str, Any] = key_values(RECIPE_TEXT)


def nanogpt_recipe(root: Path) -> dict[str, Any]:
    """What nanoGPT's train.py would run with README_COMMAND: its defaults, then the config
    file, then the flags (its configurator's order)."""
    readme = (root / "README.md").read_text(encoding="utf-8")
    if README_COMMAND not in readme:
        raise SystemExit(f"{root}/README.md no longer has the CPU line this bench runs")
    settings = literal_assignments(root / "train.py")
    settings.update(literal_assignments(root / "config" / "train_shakespeare_char.py"))
    settings.update(key_values(" ".join(README_COMMAND.split()[3:])))
    changed = {k: (v, settings.get(k)) for k, v in RECIPE.items() if settings.get(k) != v}
    if changed:
        raise SystemExit(f"nanoGPT's recipe differs from RECIPE (ours, theirs): {changed}")
    return settings


def run_recipe(args: argparse.Namespace) -> dict[str, Any]:
    """RECIPE with this run's length and evaluation; a shorter run warms up for a tenth of
    it (at most the recipe's 100 steps) and decays to its end."""
    r = dict(RECIPE, eval_interval=args.eval_interval, eval_iters=args.eval_iters)
    if args.max_iters is not None:
        warmup = min(RECIPE["warmup_iters"], args.max_iters // 10)
        r.update(max_iters=args.max_iters, lr_decay_iters=args.max_iters, warmup_iters=warmup)
    return r


def nanogpt_command(r: dict[str, Any], out_dir: Path) -> list[str]:
    """README_COMMAND, with the run's length and evaluation where they differ, and out_dir."""
    changed = ("max_iters", "lr_decay_iters", "warmup_iters", "eval_interval", "eval_iters")
    extra = [f"--{k}={r[k]}" for k in changed if r[k] != RECIPE[k]]
    return [sys.executable, *README_COMMAND.split()[1:], *extra, f"--out_dir={out_dir}"]


def ours_a_config(r: dict[str, Any], text: Path) -> dict[str, Any]:
    """Our run config for nanoGPT's recipe ``r`` (OURS_A filled in) reading ``text``."""
    from scratchgpt.config import apply_overrides

    return apply_overrides(
        {"data": {"source": str(text)}}, key_values(OURS_A.format(**r, train_share=TRAIN_SHARE))
    )


def ours_b_command(args: argparse.Namespace, r: dict[str, Any], text: Path, out: Path) -> list[str]:
    """``scratchgpt train`` on the shipped config, with what makes the measurement the same."""
    command = [sys.executable, "-m", "scratchgpt", "train", "--config", str(args.config_b)]
    command += ["--data", str(text), "--train-ratio", str(TRAIN_SHARE), "--tokenizer", "char"]
    command += ["--device", "cpu", "--sample-interval", "0", "--eval-batches", str(r["eval_iters"])]
    if args.eval_interval_b is not None:
        command += ["--eval-interval", str(args.eval_interval_b)]
    if args.max_iters is not None:  # a short run: its warmup scaled as the recipe's
        command += ["--max-steps", str(args.max_iters), "--warmup-steps", str(r["warmup_iters"])]
    return [*command, "--out", str(out)]


# --- data: one split for both sides -------------------------------------------------------------


def prepare_nanogpt_data(root: Path, text: Path, env: dict[str, str]) -> None:
    """nanoGPT's own prepare.py on our copy of the text (it downloads only when it is absent)."""
    where = root / "data" / "shakespeare_char"
    shutil.copyfile(text, where / "input.txt")
    done = subprocess.run(
        [sys.executable, "prepare.py"], cwd=where, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"nanoGPT's prepare.py failed:\n{done.stdout}{done.stderr[-2000:]}")


def check_split(text: Path, nanogpt: Path | None) -> dict[str, Any]:
    """Our split of ``text`` as our trainer makes it, and whether it equals nanoGPT's bins."""
    from scratchgpt.tokenizers import get_tokenizer

    chars = text.read_text(encoding="utf-8")
    tok = get_tokenizer("char", text=chars)
    ids = np.asarray(tok.encode(chars), dtype=np.int64)
    cut = int(len(ids) * TRAIN_SHARE)
    out: dict[str, Any] = {
        "file": text.name,
        "chars": len(chars),
        "vocab_size": tok.vocab_size,
        "train_tokens": cut,
        "val_tokens": len(ids) - cut,
        "rule": f"train = ids[:int({TRAIN_SHARE} n)], val = the rest (both sides)",
    }
    if nanogpt is not None:
        where = nanogpt / "data" / "shakespeare_char"
        theirs = [np.fromfile(where / f"{s}.bin", dtype=np.uint16) for s in ("train", "val")]
        out["same_as_nanogpt"] = all(
            np.array_equal(a.astype(np.int64), b)
            for a, b in zip(theirs, (ids[:cut], ids[cut:]), strict=True)
        )
    return out


# --- running a contender ------------------------------------------------------------------------


@dataclass
class Watched:
    """A finished subprocess: its wall time, peak RSS, and the lines of the watched file, each
    with the seconds since the start at which it was first seen."""

    wall_s: float
    peak_rss_mb: float
    lines: list[tuple[float, str]]


def run_watched(
    command: list[str], cwd: Path, env: dict[str, str], out: Path, watch: Path
) -> Watched:
    """Run ``command`` to its end, its output to ``out/stdout.log``, polling ``watch`` for new
    lines every POLL_S. The child is reaped with os.wait4 for its own ru_maxrss
    (RUSAGE_CHILDREN would give the largest of all children so far)."""
    lines: list[tuple[float, str]] = []
    offset, partial, log = 0, b"", out / "stdout.log"
    start = time.perf_counter()
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            now = time.perf_counter() - start
            if watch.is_file():
                with watch.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                offset += len(chunk)
                *complete, partial = (partial + chunk).split(b"\n")
                lines += [(now, line.decode("utf-8", "replace")) for line in complete]
            if pid:
                break
            time.sleep(POLL_S)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(command[:5])} ... failed (exit {proc.returncode}):\n{tail}")
    return Watched(now, usage.ru_maxrss / 1024, lines)  # ru_maxrss: KiB on Linux


def parse_nanogpt(lines: list[tuple[float, str]]) -> tuple[list[dict[str, Any]], list[float]]:
    """nanoGPT's evaluations ("step N: train loss X, val loss Y") and step times in ms ("iter
    N: loss X, time Yms"; the time of a step after an evaluation includes it)."""
    evals, step_ms = [], []
    for t, line in lines:
        if m := STEP_LINE.match(line):
            evals.append({"step": int(m[1]), "train_loss": float(m[2]), "val_loss": float(m[3])})
            evals[-1]["t_s"] = t
        elif m := ITER_LINE.match(line):
            step_ms.append(float(m[3]))
    return evals, step_ms


def parse_ours(lines: list[tuple[float, str]]) -> tuple[list[dict[str, Any]], list[float]]:
    """Our evaluations (metrics.jsonl rows with val_loss) and step times (the rows' step_ms,
    which leave the evaluations out)."""
    evals, step_ms = [], []
    for t, line in lines:
        row = json.loads(line)
        if "step_ms" in row:
            step_ms.append(row["step_ms"])
        if "val_loss" in row:
            train = row.get("eval_train_loss", row.get("train_loss"))
            evals.append({"step": row["step"], "train_loss": train, "val_loss": row["val_loss"]})
            evals[-1]["t_s"] = t
    return evals, step_ms


def time_to_reach(evals: list[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """When the validation loss first reaches ``target``: interpolated in time between the
    last evaluation above it and the first at or below it; None if it never does."""
    for i, e in enumerate(evals):
        if e["val_loss"] <= target:
            t = e["t_s"]
            if i > 0:
                p = evals[i - 1]
                share = (p["val_loss"] - target) / (p["val_loss"] - e["val_loss"])
                t = p["t_s"] + share * (e["t_s"] - p["t_s"])
            return {"t_s": t, "first_eval_step": e["step"], "first_eval_t_s": e["t_s"]}
    return None


def summarise(name: str, w: Watched, parsed: tuple[list, list], shape: tuple[int, ...]) -> dict:
    """One contender's row from its run, its parsed output and (steps, batch, context)."""
    (evals, step_ms), (steps, batch, context) = parsed, shape
    if not evals:
        raise SystemExit(f"{name}: no evaluation found in its output")
    median_ms = statistics.median(step_ms) if step_ms else None
    return {
        "contender": name,
        "wall_s": w.wall_s,
        "steps": steps,
        "batch_size": batch,
        "context_length": context,
        "tokens": steps * batch * context,
        "tokens_per_sec": steps * batch * context / w.wall_s,
        "step_ms_median": median_ms,
        "tokens_per_sec_median_step": batch * context / (median_ms / 1000) if median_ms else None,
        "peak_rss_mb": w.peak_rss_mb,
        "final_val_loss": evals[-1]["val_loss"],
        "final_eval_step": evals[-1]["step"],
        "evals": evals,
    }


def run_contender(name: str, args: argparse.Namespace, r: dict[str, Any], text: Path) -> dict:
    """Run one contender in ``args.work/name`` and summarise it."""
    out = args.work / name
    if out.exists():
        raise SystemExit(f"{out} exists already: give an empty --work-dir")
    out.mkdir(parents=True)
    if name == "nanogpt":
        command = nanogpt_command(r, out / "out")
        w = run_watched(command, args.nanogpt, args.env, out, watch=out / "stdout.log")
        # train.py stops once iter_num > max_iters: one step after its last evaluation.
        shape = (r["max_iters"] + 1, r["batch_size"], r["block_size"])
        return summarise(name, w, parse_nanogpt(w.lines), shape)
    run_dir = out / "run"
    if name == "ours-a":
        config = out / "config.json"
        config.write_text(json.dumps(ours_a_config(r, text), indent=1), encoding="utf-8")
        command = [sys.executable, "-m", "scratchgpt", "train", "--config", str(config)]
        command += ["--out", str(run_dir)]
    else:
        command = ours_b_command(args, r, text, run_dir)
    w = run_watched(command, ROOT, args.env, out, watch=run_dir / "metrics.jsonl")
    effective = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    parsed = parse_ours(w.lines)
    t, m = effective["training"], effective["model"]
    shape = (parsed[0][-1]["step"], t["batch_size"] * t["grad_accum"], m["context_length"])
    row = summarise(name, w, parsed, shape)
    return {**row, "command": [Path(command[0]).name, *command[1:]], "config": effective}


# --- the comparison -----------------------------------------------------------------------------


def compare(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ratios against nanoGPT and the targets (pass, fail, or n/a when a side is missing)."""
    nano, a, b = (rows.get(k) for k in CONTENDERS)
    b = b if b is not None and "wall_s" in b else None
    out: dict[str, Any] = {}
    if nano is not None:
        target = nano["final_val_loss"]
        for row in (a, b):
            if row is not None:
                row["reaches_nanogpt_final"] = time_to_reach(row["evals"], target)
        if a is not None:
            out["a_wall_ratio"] = a["wall_s"] / nano["wall_s"]
            out["a_final_val_loss_diff"] = a["final_val_loss"] - target
        if b is not None:
            reach = b["reaches_nanogpt_final"]
            out["b_reach_ratio"] = reach["t_s"] / nano["wall_s"] if reach else None
    checks = {
        "a_wall_ratio": f"ours-a wall time <= {TARGETS['a_wall_ratio']}x nanoGPT's",
        "b_reach_ratio": "ours-b reaches nanoGPT's final val loss in <= "
        f"{TARGETS['b_reach_ratio']}x nanoGPT's wall time",
    }
    out["targets"] = {
        text: "n/a" if out.get(k) is None else "pass" if out[k] <= TARGETS[k] else "fail"
        for k, text in checks.items()
    }
    return out


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    print("contender    wall s  val loss   tok/s  RSS MB  reach s")
    for name, row in rows.items():
        if "skipped" in row:
            print(f"{name:10} skipped: {row['skipped']}")
            continue
        reach = row.get("reaches_nanogpt_final")
        cells = (row["wall_s"], row["final_val_loss"], row["tokens_per_sec"], row["peak_rss_mb"])
        reach_s = f"{reach['t_s']:8.1f}" if reach else "       -"
        print(
            f"{name:10} {cells[0]:8.1f} {cells[1]:9.4f} {cells[2]:7.0f} {cells[3]:7.0f} {reach_s}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    all_ = ",".join(CONTENDERS)
    p.add_argument("--contenders", default=all_, help=f"some of {all_} (default: all)")
    p.add_argument("--nanogpt", type=Path, default=ROOT / ".peers" / "nanoGPT", help="checkout")
    p.add_argument("--config-b", type=Path, default=ROOT / "configs" / "shakespeare-char-cpu.yaml")
    p.add_argument("--eval-interval-b", type=int, help="evaluate ours-b this often")
    p.add_argument("--max-iters", type=int, help="a shorter run on every side (a sanity check)")
    p.add_argument("--eval-interval", type=int, default=RECIPE["eval_interval"], help="nanogpt, a")
    p.add_argument("--eval-iters", type=int, default=RECIPE["eval_iters"], help="every side")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="every side")
    p.add_argument("--shared-data", type=Path, help=f"the directory of {TEXT_FILE}")
    p.add_argument("--work-dir", type=Path, help="keep the runs here (default: a temp dir)")
    p.add_argument("--out", type=Path, help="write the results here, not in bench/results/")
    args = p.parse_args(argv)
    args.contenders = [c for c in args.contenders.split(",") if c]
    for name in ("nanogpt", "config_b", "shared_data", "work_dir", "out"):  # children run elsewhere
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).resolve())
    if not args.contenders or set(args.contenders) - set(CONTENDERS):
        p.error(f"--contenders: some of {all_}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    text = shared_data_dir(args.shared_data) / TEXT_FILE
    if not text.is_file():
        raise SystemExit(f"{text} is missing: see ../shared/data/SOURCES.md, or --shared-data")
    have_nanogpt = (args.nanogpt / "train.py").is_file()
    if "nanogpt" in args.contenders and not have_nanogpt:
        raise SystemExit(
            f"no nanoGPT checkout in {args.nanogpt}: git clone https://github.com/karpathy/"
            f"nanoGPT {args.nanogpt} (never committed), or --contenders ours-a,ours-b"
        )
    if "ours-b" in args.contenders and not args.config_b.is_file():
        print(f"note: {args.config_b} does not exist yet: ours-b is skipped", flush=True)
    r = run_recipe(args)
    threads, paths = str(args.threads), [str(ROOT / "src"), os.environ.get("PYTHONPATH")]
    args.env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    args.env.update(PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(p for p in paths if p))
    peer: dict[str, Any] = {"dir": str(args.nanogpt), "present": have_nanogpt}
    if have_nanogpt:
        git = ["git", "-C", str(args.nanogpt), "rev-parse", "HEAD"]
        peer["commit"] = subprocess.run(git, capture_output=True, text=True).stdout.strip()
        nanogpt_recipe(args.nanogpt)  # stops if RECIPE no longer matches its files
        prepare_nanogpt_data(args.nanogpt, text, args.env)
    split = check_split(text, args.nanogpt if have_nanogpt else None)
    load_before = os.getloadavg()
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="scratchgpt-bench-sampleff-") as tmp:
        args.work = args.work_dir or Path(tmp)
        for name in (c for c in CONTENDERS if c in args.contenders):
            if name == "ours-b" and not args.config_b.is_file():
                rows[name] = {"contender": name, "skipped": f"{args.config_b} does not exist"}
                continue
            rows[name] = run_contender(name, args, r, text)
            brief = {k: v for k, v in rows[name].items() if k not in ("evals", "config")}
            print(json.dumps({"bench": "sample_efficiency", **brief}), flush=True)
    summary = compare(rows)
    print_table(rows)
    for target, verdict in summary["targets"].items():
        print(f"{verdict}: {target}")
    print(json.dumps({"bench": "sample_efficiency", **summary}), flush=True)
    result = {
        **header("sample_efficiency"),
        "peer": peer,
        "readme_command": README_COMMAND,
        "recipe": r,
        "split": split,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "timing": "wall: subprocess start to exit; an evaluation's t_s: when its line (nanoGPT) "
        f"or metrics row (ours) was first seen, polled every {POLL_S} s; reaches_nanogpt_final: "
        "linear in time between the evaluations around it",
        "peak_rss": "the child's ru_maxrss from os.wait4",
        "loadavg_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        "contenders": rows,
        **summary,
    }
    if args.out is None:
        write_results(result)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(json.dumps({"bench": "sample_efficiency", "written": str(args.out)}))
    return result


if __name__ == "__main__":
    main()
