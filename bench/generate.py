"""Generation speed: scratchgpt's KV-cache decoding against Hugging Face and the textbook loop.

For the gpt2-124M shape with random weights: a 20-token prompt, 200 new tokens, greedy, at
batch 1 and 8. Contenders, in the same run on the same weights:

- ``ours``: :func:`scratchgpt.generation.generate` (static KV cache, eager);
- ``ours_compiled``: the same with the decode step from
  :func:`scratchgpt.generation.compile_decode_step` (what ``Generator(compile=True)`` and
  ``scratchgpt generate --compile`` use: frozen weights on a CPU, CUDA graphs on a GPU);
- ``ours_bf16`` and ``ours_bf16_compiled``: both with bf16 weights, where the device has bf16
  matmuls;
- ``ours_int8_compiled``: int8 weights with bf16 activations, compiled
  (:func:`scratchgpt.quantization.quantize`, when torchao is installed);
- ``hf``: ``transformers.GPT2LMHeadModel.generate`` on our weights exported with
  :func:`scratchgpt.pretrained.export_hf` (fp32; its tokens must equal ours);
- ``textbook``: our loop without a cache, re-reading the whole context for every token.

At batch 1, decoding reads every weight once per token, so speed is bounded by memory
bandwidth. The floor printed is (bytes of weights read per token) / (bandwidth of a large
matrix-vector product measured in the same run). The quality cost of bf16 and int8 weights
is the change in perplexity on the-verdict against fp32, on a trained checkpoint if one is
given (``--quality-checkpoint``; random weights say little about quality).

    python bench/generate.py                 # writes bench/results/generate-<device>-<date>.json
    python bench/generate.py --quality-checkpoint runs/the-verdict
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import tempfile
import time
from pathlib import Path

import torch
from common import ROOT, header, sync, write_results  # bench/common.py

from scratchgpt.config import preset
from scratchgpt.generation import compile_decode_step, generate
from scratchgpt.model import GPTModel, lm_loss
from scratchgpt.quantization import quantize


def timed(fn, device: torch.device, repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` runs (after one warm-up run), and the last result."""
    result = fn()
    best = math.inf
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def matvec_bandwidth(device: torch.device, dtype: torch.dtype) -> float:
    """Bytes per second of y = W x for a W much larger than any cache (the decode pattern)."""
    W = torch.randn(8192, 8192, device=device).to(dtype)  # 256 MB in fp32
    x = torch.randn(8192, 1, device=device).to(dtype)
    seconds, _ = timed(lambda: W @ x, device, repeats=10)
    return W.numel() * W.element_size() / seconds


def matmuls_only_tok_s(model: GPTModel, device: torch.device, repeats: int = 5) -> float:
    """Batch-1 tokens/s if a decode step were nothing but its matrix products (F.linear over
    every weight matrix, head included): the ceiling that this torch's kernels put on decoding,
    beside the bandwidth floor."""
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = {w.size(1): torch.randn(1, w.size(1), device=device, dtype=w.dtype) for w in weights}
    with torch.inference_mode():
        seconds, _ = timed(
            lambda: [torch.nn.functional.linear(inputs[w.size(1)], w) for w in weights],
            device,
            repeats,
        )
    return 1 / seconds


def weight_bytes_per_token(model: GPTModel) -> int:
    """Bytes of weights one decode step reads: everything but the unused embedding rows."""
    total = 0
    for name, p in model.named_parameters():
        if name in ("tok_emb.weight", "pos_emb.weight") and not (
            name == "tok_emb.weight" and model.cfg.tie_weights
        ):
            total += p.size(1) * p.element_size()  # one row is looked up
        else:
            total += p.numel() * p.element_size()  # read in full (a tied embedding is the head)
    return total


def hf_model_from(model: GPTModel, dtype: torch.dtype):
    """The same weights in transformers' GPT2LMHeadModel, through our exporter."""
    from transformers import GPT2LMHeadModel

    from scratchgpt.pretrained import export_hf

    with tempfile.TemporaryDirectory() as tmp:
        export_hf(model, None, tmp)
        hf = GPT2LMHeadModel.from_pretrained(tmp, torch_dtype=dtype, attn_implementation="sdpa")
    return hf.eval()


def perplexity(model: GPTModel, ids: torch.Tensor) -> float:
    """exp(mean loss) over non-overlapping context-length windows of ``ids``."""
    L = model.cfg.context_length
    n = (ids.numel() - 1) // L
    x = ids[: n * L].view(n, L)  # (n, L) windows
    y = ids[1 : n * L + 1].view(n, L)
    device = next(model.parameters()).device
    with torch.inference_mode():
        return math.exp(lm_loss(model(x.to(device)), y.to(device)).item())


def copy_of(model: GPTModel) -> GPTModel:
    """A separate model with the same weights, in eval mode on the same device (each weight
    format and each frozen compiled step needs a model of its own)."""
    copy = GPTModel(model.cfg).to(next(model.parameters()).device).eval()
    copy.load_state_dict(model.state_dict())
    return copy


def weight_format_quality(
    model: GPTModel, text_path: Path, checkpoint: Path | None, int8: bool
) -> dict[str, object]:
    """Perplexity on ``text_path`` with fp32, bf16 and (``int8``) int8 weights, and the
    relative change of each against fp32.

    A trained checkpoint (with its own tokenizer) when given, else ``model`` (random weights,
    GPT-2 ids from the local vocabulary files beside the text).
    """
    from scratchgpt.checkpoint import load_checkpoint
    from scratchgpt.tokenizers import get_tokenizer

    device = next(model.parameters()).device
    if checkpoint is not None:
        weights = f"trained checkpoint {checkpoint.name}"

        def fresh() -> GPTModel:
            return load_checkpoint(checkpoint, device=device)[0].eval()

        tok = load_checkpoint(checkpoint)[1]
    else:
        weights = "random (gpt2-124M shape)"

        def fresh() -> GPTModel:
            return copy_of(model)

        tok = get_tokenizer(text_path.parent)
    ids = torch.tensor(tok.encode(text_path.read_text(encoding="utf-8")))
    ppl = {"fp32": perplexity(fresh(), ids), "bf16": perplexity(fresh().to(torch.bfloat16), ids)}
    if int8:
        ppl["int8"] = perplexity(quantize(fresh()), ids)
    return {
        "text": text_path.name,
        "weights": weights,
        "ppl": ppl,
        "rel_change_vs_fp32": {k: v / ppl["fp32"] - 1 for k, v in ppl.items() if k != "fp32"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompt-len", type=int, default=20)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--textbook-batch-sizes",
        type=int,
        nargs="*",
        default=[1],
        help="batch sizes that also time the no-cache loop (on 2 CPU cores, batch 8 would "
        "re-read 8 x 220 tokens per step: about a quarter of an hour)",
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled contenders")
    parser.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "data" / "the-verdict.txt"
    )
    parser.add_argument(
        "--quality-checkpoint",
        type=Path,
        help="a trained run or checkpoint directory for the perplexity of each weight format",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = GPTModel(preset("gpt2-124M", drop_rate=0.0)).to(device).eval()
    hf = hf_model_from(model.cpu(), torch.float32).to(device)
    model.to(device)
    bf16_ok = device.type == "cuda" or torch.backends.mkldnn.is_available()
    model_bf16 = copy_of(model).to(torch.bfloat16) if bf16_ok else None
    model_int8 = None
    if bf16_ok and not args.no_compile and importlib.util.find_spec("torchao") is not None:
        model_int8 = quantize(copy_of(model))  # int8 weights, bf16 activations
    # One compiled step per model: a frozen (CPU) step belongs to the weights it was built on.
    compiled = (
        {}
        if args.no_compile
        else {
            "fp32": compile_decode_step(device.type),
            "bf16": compile_decode_step(device.type),
            "int8": compile_decode_step(device.type),
        }
    )

    bandwidth = matvec_bandwidth(device, torch.float32)
    floor_fp32 = bandwidth / weight_bytes_per_token(model)
    matmuls_only = {"fp32": matmuls_only_tok_s(model, device)}
    if model_bf16 is not None:
        matmuls_only["bf16"] = matmuls_only_tok_s(model_bf16, device)
    print(json.dumps({"bench": "generate", "matmuls_only_tok_s_batch1": matmuls_only}))
    rows: list[dict[str, object]] = []
    for batch in args.batch_sizes:
        idx = torch.randint(0, model.cfg.vocab_size, (batch, args.prompt_len), device=device)
        n = args.new_tokens

        def ours(m: GPTModel = model, decode_fn=None, idx: torch.Tensor = idx, n: int = n):
            return generate(m, idx, n, temperature=0, decode_fn=decode_fn)

        def hf_generate(idx: torch.Tensor = idx, n: int = n) -> torch.Tensor:
            with torch.inference_mode():
                return hf.generate(
                    idx,
                    attention_mask=torch.ones_like(idx),
                    max_new_tokens=n,
                    min_new_tokens=n,
                    do_sample=False,
                    pad_token_id=0,
                )

        t_ours, out_ours = timed(ours, device, args.repeats)
        t_hf, out_hf = timed(hf_generate, device, args.repeats)
        row: dict[str, object] = {
            "batch": batch,
            "ours_tok_s": batch * n / t_ours,
            "hf_tok_s": batch * n / t_hf,
            "ours_over_hf": t_hf / t_ours,
            "same_tokens_as_hf": bool(torch.equal(out_ours, out_hf)),
        }
        if "fp32" in compiled:
            t_c, out_c = timed(lambda: ours(decode_fn=compiled["fp32"]), device, args.repeats)
            row["ours_compiled_tok_s"] = batch * n / t_c
            row["ours_compiled_over_hf"] = t_hf / t_c
            row["compiled_same_tokens"] = bool(torch.equal(out_c, out_ours))
        if batch == 1:
            best = max(float(row["ours_tok_s"]), float(row.get("ours_compiled_tok_s", 0.0)))
            row["floor_tok_s"] = floor_fp32
            row["ours_fraction_of_floor"] = best / floor_fp32
        if batch in args.textbook_batch_sizes:
            t_tb, out_tb = timed(
                lambda idx=idx, n=n: generate(model, idx, n, temperature=0, use_cache=False),
                device,
                1,
            )
            row["textbook_tok_s"] = batch * n / t_tb
            row["ours_over_textbook"] = t_tb / t_ours
            row["textbook_same_tokens"] = bool(torch.equal(out_tb, out_ours))
        if model_int8 is not None and "int8" in compiled:
            t_i8, out_i8 = timed(lambda: ours(model_int8, compiled["int8"]), device, args.repeats)
            row["ours_int8_compiled_tok_s"] = batch * n / t_i8
            row["ours_int8_compiled_over_hf_fp32"] = t_hf / t_i8
            row["int8_same_tokens_as_fp32"] = bool(torch.equal(out_i8, out_ours))
        if model_bf16 is not None:
            t_bf, _ = timed(lambda: ours(model_bf16), device, args.repeats)
            row["ours_bf16_tok_s"] = batch * n / t_bf
            row["ours_bf16_over_hf_fp32"] = t_hf / t_bf
            if "bf16" in compiled:
                t_bc, _ = timed(lambda: ours(model_bf16, compiled["bf16"]), device, args.repeats)
                row["ours_bf16_compiled_tok_s"] = batch * n / t_bc
                row["ours_bf16_compiled_over_hf_fp32"] = t_hf / t_bc
        rows.append(row)
        print(json.dumps({"bench": "generate", **row}), flush=True)

    quality = {}
    if model_bf16 is not None and args.data.is_file():
        quality = weight_format_quality(
            model, args.data, args.quality_checkpoint, int8=model_int8 is not None
        )
        print(json.dumps({"bench": "generate", "quality": quality}), flush=True)

    result = {
        **header("generate", device),
        "transformers": __import__("transformers").__version__,
        "shape": "gpt2-124M, random weights",
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "matvec_bandwidth_gb_s": bandwidth / 1e9,
        "weight_bytes_per_token_fp32": weight_bytes_per_token(model),
        "matmuls_only_tok_s_batch1": matmuls_only,
        "rows": rows,
        "quality": quality,
    }
    write_results(result, device)


if __name__ == "__main__":
    main()
