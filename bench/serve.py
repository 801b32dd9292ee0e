"""Serving under concurrent load: ``scratchgpt serve`` (continuous batching) against a plain
FastAPI endpoint that calls transformers' ``generate`` once per request (bench/serve_peer.py).

Both servers run as subprocesses (uvicorn on 127.0.0.1, one after the other, never at the same
time) on the same weights: the ``--preset`` shape (gpt2-124M by default) with random weights
(seed 0) and GPT-2's vocabulary, saved once to a temporary directory as a scratchgpt
checkpoint (ours: ``--checkpoint``) and as a Hugging Face export (the peer); fp32, CPU. GPT-2's
tokenizer is read from gpt2-encoder.json and gpt2-vocab.bpe in ``--shared-data`` (else
$SCRATCHGPT_SHARED_DATA, else ../shared/data).

The load: for each concurrency level (``--levels``, default 1, 8, 32), ``clients`` coroutines
share one ``httpx.AsyncClient`` and each sends one request at a time until the level's
max(clients x ``--requests-per-client``, ``--min-requests``) requests are done, so ``clients``
requests are in flight at a time. Request i has prompt i of a seeded list of random
``--prompt-tokens``-token prompts (token ids, the same list for every level and contender),
``max_tokens`` ``--max-tokens``, temperature 0, ``stream: true`` with
``stream_options.include_usage``. One untimed warm-up request precedes the levels.

Measured per request: time to first token (TTFT: from sending the request to the first
server-sent chunk carrying non-empty text), latency (to ``data: [DONE]``) and completion tokens
(``usage.completion_tokens`` of the last chunk; a server that sends no usage is counted by its
non-empty text chunks, and the results say which). Per level: aggregate tokens/s (all
completion tokens / the level's wall time), p50 and p95 of TTFT and latency (linear
interpolation between order statistics). Greedy outputs are compared, never asserted: ours
against the peer for the same prompt and level (same weights, so the same text and token
count are expected), and each contender's outputs across levels (batched == one at a time).

Targets (printed, never asserted): ours@8 / ours@1 tokens/s >= 3, ours@8 / transformers@8
>= 3, ours' p95 TTFT at 8 clients < 1 s. The peer runs one ``generate`` at a time by default
(``--peer-serialize``), which gave it its best tokens/s on 2 CPU cores (gpt2-124M, 8 clients:
about 31 tokens/s serialised, 29.5 with 8 ``generate`` threads sharing the cores; the threads
give first tokens after 0.5 s instead of after up to 15 s of queueing, so
``--no-peer-serialize`` is the fairer peer for TTFT). The results say which ran.

Time: the peer makes about 30 tokens/s at the gpt2-124M shape on 2 CPU cores, and the
defaults' three levels are 8, 16 and 64 requests of 64 tokens (5,632 tokens per contender):
about 3 minutes for the peer, less for ours, under 10 in all.

    python bench/serve.py        # writes bench/results/serve-cpu-<date>.json
    python bench/serve.py --levels 1,8 --contenders transformers
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import torch
from common import ROOT, header, package_version, shared_data_dir, write_results

SEED = 0
MODEL_NAME = "bench-gpt2"  # --served-model-name of both servers, and every request's "model"
CONTENDERS = ("ours", "transformers")
TARGETS = {"scaling": 3.0, "vs_peer": 3.0, "ttft_p95_s": 1.0}


def prepare_weights(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Any], Path, Path]:
    """The seeded random model, written once as our checkpoint and as a Hugging Face export."""
    from scratchgpt.checkpoint import save_checkpoint
    from scratchgpt.config import preset
    from scratchgpt.model import GPTModel
    from scratchgpt.pretrained import export_hf
    from scratchgpt.tokenizers import get_tokenizer

    tok = get_tokenizer(shared_data_dir(args.shared_data))
    # The preset's shape with GPT-2's vocabulary (the tiny test presets have a smaller one).
    cfg = preset(args.preset, vocab_size=tok.vocab_size)
    if args.prompt_tokens + args.max_tokens > cfg.context_length:
        raise SystemExit(
            f"--prompt-tokens {args.prompt_tokens} + --max-tokens {args.max_tokens} exceed the "
            f"{args.preset} context of {cfg.context_length}: ask for fewer tokens"
        )
    torch.manual_seed(SEED)
    model = GPTModel(cfg).eval()
    checkpoint = save_checkpoint(tmp / "checkpoint", model, tok)
    hf_dir = export_hf(model, tok, tmp / "hf")
    return cfg.to_dict(), checkpoint, hf_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(
    name: str, args: argparse.Namespace, weights: dict[str, Path], port: int
) -> list[str]:
    """The command line that starts ``name``'s server on ``port`` (the flags ours relies on)."""
    where = ["--host", "127.0.0.1", "--port", str(port), "--served-model-name", MODEL_NAME]
    if name == "ours":
        ours = [sys.executable, "-m", "scratchgpt", "serve", "--checkpoint", str(weights["ours"])]
        return [*ours, *where, "--max-batch", str(args.max_batch)]
    peer = [sys.executable, str(Path(__file__).with_name("serve_peer.py"))]
    serialize = "--serialize" if args.peer_serialize else "--no-serialize"
    return [*peer, "--model", str(weights["transformers"]), *where, serialize]


@contextlib.contextmanager
def running(command: list[str], log: Path, url: str, timeout: float) -> Iterator[float]:
    """Start the server, wait for GET /health to answer 200 (yields the seconds that took),
    and stop it on the way out however the block ends: its process group is terminated, then
    killed, so no child of it outlives the benchmark. On a failure, its log's tail is shown."""
    paths = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # this checkout's scratchgpt
    start = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{' '.join(command)} exited {proc.returncode}")
            if time.perf_counter() - start > timeout:
                raise SystemExit(f"{' '.join(command)} not ready after {timeout:.0f} s")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2, trust_env=False).status_code == 200:
                    break
            time.sleep(0.2)
        yield time.perf_counter() - start
    except BaseException:
        sys.stderr.write(
            f"--- the last of {log.name}:\n{log.read_text(errors='replace')[-3000:]}\n"
        )
        raise
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait)
                break


async def one_request(client: httpx.AsyncClient, prompt: list[int], max_tokens: int) -> dict:
    """Send one streamed completion and time it; the text is kept for the greedy comparison."""
    body = {
        "model": MODEL_NAME,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    ttft, usage, texts = None, None, []
    async with client.stream("POST", "/v1/completions", json=body) as resp:
        if resp.status_code != 200:
            detail = (await resp.aread()).decode(errors="replace")[:500]
            raise SystemExit(f"POST /v1/completions answered {resp.status_code}: {detail}")
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            usage = chunk.get("usage") or usage
            text = "".join(c.get("text") or "" for c in chunk.get("choices") or [])
            if text:
                ttft = ttft if ttft is not None else time.perf_counter() - start
                texts.append(text)
    latency = time.perf_counter() - start
    counted = usage is not None and usage.get("completion_tokens") is not None
    return {
        "ttft_s": ttft if ttft is not None else latency,  # no text at all: the whole wait
        "latency_s": latency,
        "tokens": usage["completion_tokens"] if counted else len(texts),
        "from_usage": counted,
        "text": "".join(texts),
    }


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the order statistics (numpy's default)."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


async def run_level(
    client: httpx.AsyncClient, prompts: list[list[int]], clients: int, max_tokens: int
) -> tuple[dict[str, Any], list[dict]]:
    """``clients`` coroutines, each taking the next prompt when its last request is done."""
    results: list[dict] = [{}] * len(prompts)
    queue = iter(range(len(prompts)))  # shared: each worker takes the next index

    async def worker() -> None:
        for i in queue:
            results[i] = await one_request(client, prompts[i], max_tokens)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - start
    ttft, latency = [r["ttft_s"] for r in results], [r["latency_s"] for r in results]
    tokens = sum(r["tokens"] for r in results)
    row = {
        "clients": clients,
        "requests": len(prompts),
        "wall_s": wall,
        "completion_tokens": tokens,
        "tokens_per_sec": tokens / wall,
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p95_s": percentile(ttft, 95),
        "latency_p50_s": percentile(latency, 50),
        "latency_p95_s": percentile(latency, 95),
        "short_requests": sum(r["tokens"] < max_tokens for r in results),
        "per_request": {k: [r[k] for r in results] for k in ("ttft_s", "latency_s", "tokens")},
    }
    return row, results


async def drive(url: str, prompts: list[list[int]], args: argparse.Namespace) -> dict[str, Any]:
    """The warm-up request, then every level in turn, then /health again (largest batch)."""
    limits = httpx.Limits(max_connections=max(args.levels) + 4)
    timeout = httpx.Timeout(args.request_timeout)
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=timeout, trust_env=False
    ) as client:
        warm = torch.Generator().manual_seed(SEED + 1)
        await one_request(client, draw_prompts(1, args.prompt_tokens, warm)[0], args.max_tokens)
        levels, outputs = [], {}
        for clients in args.levels:
            n = level_requests(args, clients)
            row, results = await run_level(client, prompts[:n], clients, args.max_tokens)
            levels.append(row)
            outputs[clients] = [(r["text"], r["tokens"]) for r in results]
            used = [r["from_usage"] for r in results]
            row["token_count"] = "usage" if all(used) else "mixed" if any(used) else "text chunks"
            brief = {k: v for k, v in row.items() if k != "per_request"}
            print(json.dumps({"bench": "serve", "url": url, **brief}), flush=True)
        health = (await client.get("/health")).json()
    return {"levels": levels, "health": health, "outputs": outputs}


def level_requests(args: argparse.Namespace, clients: int) -> int:
    return max(clients * args.requests_per_client, args.min_requests)


def draw_prompts(n: int, length: int, gen: torch.Generator) -> list[list[int]]:
    eot = 50256  # GPT-2's <|endoftext|>: left out, so no prompt holds a document boundary
    return torch.randint(0, eot, (n, length), generator=gen).tolist()  # (n, length)


def greedy_checks(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Equal outputs (text and token count) for the same prompt: ours vs the peer per level,
    and each contender at every level vs itself at the first level."""
    out: dict[str, Any] = {"across_levels": {}}
    for name, run in runs.items():
        levels = list(run["outputs"].values())
        n = min(len(level) for level in levels)
        same = sum(all(level[i] == levels[0][i] for level in levels) for i in range(n))
        out["across_levels"][name] = {"prompts": n, "equal": same}
    if {"ours", "transformers"} <= runs.keys():
        peer = runs["transformers"]["outputs"]
        pairs = [
            {"clients": clients, "prompt": i, "ours": a, "transformers": b}
            for clients, ours in runs["ours"]["outputs"].items()
            for i, (a, b) in enumerate(zip(ours, peer[clients], strict=True))
        ]
        equal = sum(p["ours"] == p["transformers"] for p in pairs)
        out["ours_vs_transformers"] = {
            "compared": len(pairs),
            "equal": equal,
            "all_equal": equal == len(pairs),
            "first_difference": next((p for p in pairs if p["ours"] != p["transformers"]), None),
        }
    return out


def ratios(runs: dict[str, dict[str, Any]], levels: list[int]) -> dict[str, Any]:
    """Scaling (tokens/s at the top level over the lowest) per contender; ours over the peer;
    and the targets, where ours ran."""
    base, top = min(levels), 8 if 8 in levels else max(levels)
    tps = {n: {r["clients"]: r["tokens_per_sec"] for r in run["levels"]} for n, run in runs.items()}
    out: dict[str, Any] = {"base_clients": base, "top_clients": top}
    out["scaling"] = {n: t[top] / t[base] if t[base] else None for n, t in tps.items()}
    if {"ours", "transformers"} <= runs.keys():
        out["ours_vs_transformers"] = {c: tps["ours"][c] / tps["transformers"][c] for c in levels}
    if "ours" in runs:
        ttft = next(r["ttft_p95_s"] for r in runs["ours"]["levels"] if r["clients"] == top)
        scaling = out["scaling"]["ours"] or 0.0
        checks = {
            f"ours@{top} / ours@{base} tokens/s >= {TARGETS['scaling']}": scaling
            >= TARGETS["scaling"],
            f"ours p95 TTFT at {top} clients < {TARGETS['ttft_p95_s']} s": ttft
            < TARGETS["ttft_p95_s"],
        }
        if "ours_vs_transformers" in out:
            key = f"ours@{top} / transformers@{top} tokens/s >= {TARGETS['vs_peer']}"
            checks[key] = out["ours_vs_transformers"][top] >= TARGETS["vs_peer"]
        out["targets"] = {k: "pass" if v else "fail" for k, v in checks.items()}
    return out


def print_table(runs: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    print(
        f"{'contender':<13}{'clients':>8}{'requests':>9}{'tok/s':>9}{'TTFT p50':>10}"
        f"{'TTFT p95':>10}{'lat p50':>9}{'lat p95':>9}"
    )
    for name, run in runs.items():
        for r in run["levels"]:
            print(
                f"{name:<13}{r['clients']:>8}{r['requests']:>9}{r['tokens_per_sec']:>9.1f}"
                f"{r['ttft_p50_s']:>10.3f}{r['ttft_p95_s']:>10.3f}{r['latency_p50_s']:>9.2f}"
                f"{r['latency_p95_s']:>9.2f}"
            )
    for name, run in runs.items():
        print(f"{name}: largest batch {run['largest_batch']}, startup {run['startup_s']:.1f} s")
    ratios = summary["ratios"]
    for name, x in ratios["scaling"].items():
        print(f"{name}@{ratios['top_clients']} / {name}@{ratios['base_clients']} tokens/s: {x:.2f}")
    for target, verdict in ratios.get("targets", {}).items():
        print(f"{verdict}: {target}")
    print(json.dumps({"bench": "serve", **summary}), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])

    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x]

    parser.add_argument("--levels", type=ints, default=[1, 8, 32], help="concurrent clients")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=20)
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--min-requests", type=int, default=8, help="per level, at least")
    parser.add_argument("--preset", default="gpt2-124M", help="the model's shape (tests: tiny)")
    parser.add_argument(
        "--contenders", default="ours,transformers", type=lambda s: [c for c in s.split(",") if c]
    )
    parser.add_argument("--max-batch", type=int, default=32, help="ours: --max-batch")
    parser.add_argument(
        "--peer-serialize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the peer runs one generate at a time (default: on)",
    )
    parser.add_argument("--startup-timeout", type=float, default=300)
    parser.add_argument("--request-timeout", type=float, default=600)
    parser.add_argument("--shared-data", type=Path, help="directory of GPT-2's tokenizer files")
    parser.add_argument("--out-dir", type=Path, help="write the JSON here, not bench/results/")
    args = parser.parse_args(argv)
    unknown = [c for c in args.contenders if c not in CONTENDERS]
    if unknown or not args.contenders or not args.levels or min(args.levels) < 1:
        parser.error(f"--contenders: some of {', '.join(CONTENDERS)}; --levels: integers >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    # A SIGTERM (timeout, a job runner) becomes SystemExit, so the servers are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    n_prompts = max(level_requests(args, c) for c in args.levels)
    prompts = draw_prompts(n_prompts, args.prompt_tokens, torch.Generator().manual_seed(SEED))
    load_before = os.getloadavg()
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="scratchgpt-bench-serve-") as tmp:
        cfg, checkpoint, hf_dir = prepare_weights(args, Path(tmp))
        weights = {"ours": checkpoint, "transformers": hf_dir}
        for name in args.contenders:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            command = server_command(name, args, weights, port)
            with running(command, Path(tmp) / f"{name}.log", url, args.startup_timeout) as ready:
                run = asyncio.run(drive(url, prompts, args))
            run.update(startup_s=ready, largest_batch=run["health"].get("largest_batch"))
            run["command"] = [Path(command[0]).name, *command[1:]]
            runs[name] = run
    summary = {"greedy": greedy_checks(runs), "ratios": ratios(runs, args.levels)}
    print_table(runs, summary)
    for run in runs.values():
        del run["outputs"]
    result = {
        **header("serve"),
        "model": cfg,
        "preset": args.preset,
        "weights": f"random, seed {SEED}, fp32; ours: a scratchgpt checkpoint, the peer: its "
        "export_hf export",
        "peer": {n: package_version(n) for n in ("transformers", "fastapi", "uvicorn", "httpx")},
        "peer_serialize": args.peer_serialize,
        "load": {
            "levels": args.levels,
            "requests_per_level": {c: level_requests(args, c) for c in args.levels},
            "prompt_tokens": args.prompt_tokens,
            "max_tokens": args.max_tokens,
            "temperature": 0,
            "stream": True,
            "prompts": f"random token ids in [0, 50256), seed {SEED}; request i gets prompt i",
        },
        "ttft": "to the first chunk with non-empty text",
        "cpu_count": os.cpu_count(),
        "loadavg_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        "contenders": runs,
        **summary,
    }
    if args.out_dir is None:
        write_results(result)
    else:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        out = args.out_dir / f"serve-cpu-{result['date']}.json"
        out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(json.dumps({"bench": "serve", "written": str(out)}))
    return result


if __name__ == "__main__":
    main()
