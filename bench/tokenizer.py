"""Benchmark our byte-level BPE against Hugging Face ``tokenizers`` and tiktoken, same run.

Training: an 8,192-token byte-level BPE on tinyshakespeare with the same GPT-2 pre-tokenisation
regex, ours (pure Python) against Hugging Face's Rust ``BpeTrainer``. Encoding: the trained
vocabularies on the whole text, and GPT-2's own vocabulary (OpenAI's files, read locally)
through ours, tiktoken and Hugging Face; the GPT-2 ids must agree, or the run fails.

Run from the repository root:

    PYTHONPATH=src python bench/tokenizer.py [--data PATH] [--vocab-size 8192] [--repeats 3]

It prints one JSON line and writes ``bench/results/tokenizer-cpu-<date>.json``. Times are the
best of ``--repeats`` runs; "cold" encoding starts from an empty word cache, "warm" re-encodes.
Hugging Face's trainer uses every core (Rayon); ours and both encoders run on one thread.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import tiktoken
import tokenizers
from common import ROOT, best_time, header, write_results  # bench/common.py
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

from scratchgpt.tokenizers import BPETokenizer, TiktokenTokenizer
from scratchgpt.tokenizers.gpt2_files import ENDOFTEXT
from scratchgpt.tokenizers.tiktoken_bpe import GPT2_PATTERN


def cold_encode_time(tok: BPETokenizer, text: str, repeats: int) -> tuple[float, list[int]]:
    """Best time to encode ``text`` starting from an empty word cache (a fresh copy each time)."""
    best, ids = float("inf"), []
    for _ in range(repeats):
        fresh = BPETokenizer(tok.merges, special_tokens=tok.special_tokens, byte_ids=tok.byte_ids)
        start = time.perf_counter()
        ids = fresh.encode(text)
        best = min(best, time.perf_counter() - start)
    return best, ids


def hf_byte_level(model: models.Model) -> tokenizers.Tokenizer:
    """A Hugging Face tokenizer that pre-tokenises exactly like ours: GPT-2's regex, then bytes."""
    tok = tokenizers.Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT2_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def hf_train(text: str, vocab_size: int) -> tokenizers.Tokenizer:
    tok = hf_byte_level(models.BPE())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=0,
        special_tokens=[ENDOFTEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([text], trainer=trainer)
    return tok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "tinyshakespeare.txt",
        help="training and encoding text (default: ../shared/data/tinyshakespeare.txt)",
    )
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    text = args.data.read_text(encoding="utf-8")
    gpt2_dir = args.data.parent
    encoder_json, vocab_bpe = gpt2_dir / "gpt2-encoder.json", gpt2_dir / "gpt2-vocab.bpe"

    # Training, same vocabulary size, same regex, same special token.
    train_ours_s, ours = best_time(lambda: BPETokenizer.train(text, args.vocab_size), args.repeats)
    train_hf_s, hf = best_time(lambda: hf_train(text, args.vocab_size), args.repeats)
    assert ours.vocab_size == args.vocab_size == hf.get_vocab_size()

    # Encoding with the trained vocabularies.
    enc_ours_cold_s, ours_ids = cold_encode_time(ours, text, args.repeats)
    ours.encode(text)  # warm the cache
    enc_ours_warm_s, _ = best_time(lambda: ours.encode(text), args.repeats)
    enc_hf_s, hf_enc = best_time(lambda: hf.encode(text).ids, args.repeats)
    assert ours.decode(ours_ids) == text

    # Encoding with GPT-2's vocabulary: identical ids required from all three.
    ours_gpt2 = BPETokenizer.from_openai(encoder_json, vocab_bpe)
    tk = TiktokenTokenizer.from_gpt2_files(encoder_json, vocab_bpe).encoding
    hf_gpt2 = hf_byte_level(models.BPE.from_file(str(encoder_json), str(vocab_bpe)))
    gpt2_cold_s, gpt2_ids = cold_encode_time(ours_gpt2, text, args.repeats)
    ours_gpt2.encode(text)
    gpt2_warm_s, _ = best_time(lambda: ours_gpt2.encode(text), args.repeats)
    gpt2_tiktoken_s, tk_ids = best_time(lambda: tk.encode_ordinary(text), args.repeats)
    gpt2_hf_s, hf_ids = best_time(lambda: hf_gpt2.encode(text).ids, args.repeats)
    if not gpt2_ids == tk_ids == hf_ids:
        sys.exit("GPT-2 ids differ between scratchgpt, tiktoken and Hugging Face")

    mb = len(text.encode("utf-8")) / 1e6
    result: dict[str, Any] = {
        **header("tokenizer"),
        "python": platform.python_version(),
        "peers": {"tokenizers": tokenizers.__version__, "tiktoken": tiktoken.__version__},
        "data": str(args.data),
        "data_mb": round(mb, 3),
        "vocab_size": args.vocab_size,
        "repeats": args.repeats,
        "train_s": {"scratchgpt": round(train_ours_s, 3), "hf_tokenizers": round(train_hf_s, 3)},
        "train_ratio_scratchgpt_over_hf": round(train_ours_s / train_hf_s, 2),
        "trained_tokens": {"scratchgpt": len(ours_ids), "hf_tokenizers": len(hf_enc)},
        "encode_trained_s": {
            "scratchgpt_cold": round(enc_ours_cold_s, 3),
            "scratchgpt_warm": round(enc_ours_warm_s, 3),
            "hf_tokenizers": round(enc_hf_s, 3),
        },
        "encode_gpt2_s": {
            "scratchgpt_cold": round(gpt2_cold_s, 3),
            "scratchgpt_warm": round(gpt2_warm_s, 3),
            "tiktoken": round(gpt2_tiktoken_s, 3),
            "hf_tokenizers": round(gpt2_hf_s, 3),
        },
        "gpt2_tokens": len(gpt2_ids),
        "gpt2_ids_equal": True,
        # Throughput as a fraction of tiktoken's (1.0 = as fast; the target is >= 0.1).
        "throughput_vs_tiktoken": {
            "cold": round(gpt2_tiktoken_s / gpt2_cold_s, 3),
            "warm": round(gpt2_tiktoken_s / gpt2_warm_s, 3),
        },
        "gpt2_mb_per_s": {
            "scratchgpt_cold": round(mb / gpt2_cold_s, 2),
            "scratchgpt_warm": round(mb / gpt2_warm_s, 2),
            "tiktoken": round(mb / gpt2_tiktoken_s, 2),
            "hf_tokenizers": round(mb / gpt2_hf_s, 2),
        },
    }
    line = json.dumps(result)
    print(line)
    write_results(result)


if __name__ == "__main__":
    main()
