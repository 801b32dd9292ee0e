"""Training metrics: the peak-FLOP/s table, FLOPs per token, MFU, metrics.jsonl, train.log."""

import json
import logging
import re
import sys

import pytest
import torch

from scratchgpt.config import ConfigError, GPTConfig, preset
from scratchgpt.errors import MissingExtraError
from scratchgpt.model import GPTModel, num_parameters
from scratchgpt.training.metrics import (
    PEAK_FLOPS_ENV,
    MetricsLogger,
    flops_per_token,
    log_to_file,
    mfu,
    peak_flops,
    peak_flops_for_name,
)


@pytest.fixture(autouse=True)
def _no_peak_override(monkeypatch):
    monkeypatch.delenv(PEAK_FLOPS_ENV, raising=False)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", 989e12),  # the SXM part's name
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", 835e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA GH200 480GB", 989e12),
        ("NVIDIA A100-SXM4-40GB", 312e12),
        ("NVIDIA A100 80GB PCIe", 312e12),
        ("NVIDIA A10", 125e12),
        ("NVIDIA L4", 121e12),
        ("NVIDIA L40S", 362e12),
        ("NVIDIA GeForce RTX 4090", 165.2e12),
        ("NVIDIA GeForce RTX 3090", 71e12),
        ("Tesla V100-SXM2-16GB", 125e12),
        ("Tesla V100-PCIE-32GB", 112e12),
        ("Tesla T4", 65e12),
        # Names that contain a listed one but are other parts: no guess.
        ("NVIDIA A10G", None),
        ("NVIDIA GeForce RTX 3090 Ti", None),
        ("NVIDIA GeForce GTX 1080", None),
        ("Radeon something", None),
    ],
)
def test_peak_flops_table(name, expected):
    assert peak_flops_for_name(name) == expected


def test_peak_flops_of_a_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 PCIe")
    assert peak_flops("cuda") == 756e12
    assert peak_flops(torch.device("cuda", 0)) == 756e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Mystery GPU 9000")
    assert peak_flops("cuda") is None
    assert peak_flops("cpu") is None
    assert peak_flops("mps") is None
    # The override wins everywhere, a CPU included.
    monkeypatch.setenv(PEAK_FLOPS_ENV, "2.5e12")
    assert peak_flops("cpu") == 2.5e12
    assert peak_flops("cuda") == 2.5e12
    for bad in ("fast", "-1", "0", "nan"):
        monkeypatch.setenv(PEAK_FLOPS_ENV, bad)
        with pytest.raises(ConfigError, match=PEAK_FLOPS_ENV):
            peak_flops("cpu")


# A config small enough to count by hand: C=8, L=1, V=10, T=4, no QKV bias.
TINY = GPTConfig(vocab_size=10, context_length=4, emb_dim=8, n_heads=2, n_layers=1, qkv_bias=False)


@pytest.mark.parametrize("tied", [True, False])
def test_flops_per_token_by_hand(tied):
    cfg = GPTConfig(**{**TINY.to_dict(), "tie_weights": tied})
    C, V, T = 8, 10, 4
    attention = 3 * C * C + (C * C + C)  # W_query/key/value (no bias) + out_proj
    feed_forward = (C * 4 * C + 4 * C) + (4 * C * C + C)
    norms = 2 * 2 * C
    block = attention + feed_forward + norms  # 264 + 552 + 32 = 848
    n = block + 2 * C + V * C  # + final norm + the head's matrix = 944
    assert n == 944
    expected = 6 * n + 12 * 1 * T * C  # 5664 + 384
    assert flops_per_token(cfg) == expected == 6048
    # The same N from the real model: every parameter but the embedding lookups, the head in.
    model = GPTModel(cfg)
    lookups = model.pos_emb.weight.numel() + (0 if tied else model.tok_emb.weight.numel())
    assert num_parameters(model) - lookups == n


def test_flops_per_token_counts_the_padded_head():
    # vocab_multiple=16 pads V=10 to 16 head rows: the head's matmul is 16 x C wide.
    cfg = GPTConfig(**{**TINY.to_dict(), "vocab_multiple": 16})
    assert flops_per_token(cfg) == 6 * (944 + 6 * 8) + 384


def test_flops_per_token_of_gpt2_matches_nanogpt_count():
    # nanoGPT's N for GPT-2 small: all parameters but the position table (tied head).
    cfg = preset("gpt2-124M")
    n = 124_439_808 - 1024 * 768
    assert flops_per_token(cfg) == 6 * n + 12 * 12 * 1024 * 768
    # nanoGPT's own config pads the vocabulary to 50,304 rows: so does vocab_multiple=64.
    padded = preset("gpt2-124M", vocab_multiple=64)
    assert flops_per_token(padded) == 6 * (n + 47 * 768) + 12 * 12 * 1024 * 768


def test_mfu_arithmetic(monkeypatch):
    assert mfu(1000.0, TINY, "cpu") is None  # no peak known: no MFU
    monkeypatch.setenv(PEAK_FLOPS_ENV, "1e9")
    assert mfu(1000.0, TINY, "cpu") == pytest.approx(1000 * 6048 / 1e9)
    # 4 devices sharing 1000 tokens/s: each does a quarter of the work.
    assert mfu(1000.0, TINY, "cpu", world_size=4) == pytest.approx(250 * 6048 / 1e9)
    with pytest.raises(ValueError, match="world_size"):
        mfu(1000.0, TINY, "cpu", world_size=0)
    monkeypatch.delenv(PEAK_FLOPS_ENV)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    gpt2 = preset("gpt2-124M")
    # nanoGPT's reference point: ~0.86 GFLOP/token, so 400k tokens/s is about 35% of an H100.
    assert mfu(400_000.0, gpt2, "cuda") == pytest.approx(400_000 * flops_per_token(gpt2) / 989e12)
    assert 0.3 < mfu(400_000.0, gpt2, "cuda") < 0.4


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_metrics_logger_appends_flushed_rows(tmp_path):
    with MetricsLogger(tmp_path / "run") as logger:
        logger.log({"step": 10, "tokens": 640, "train_loss": 3.5, "lr": 1e-3})
        # Flushed at once: readable while the run goes on.
        assert _read(tmp_path / "run" / "metrics.jsonl") == [
            {"step": 10, "tokens": 640, "train_loss": 3.5, "lr": 1e-3}
        ]
        logger.log({"step": 20, "tokens": 1280, "train_loss": 3.0, "val_loss": 3.2})
    assert [r["step"] for r in _read(tmp_path / "run" / "metrics.jsonl")] == [10, 20]
    logger.close()  # twice is fine
    logger.log({"step": 30})  # after close: nothing
    assert len(_read(tmp_path / "run" / "metrics.jsonl")) == 2


def test_metrics_logger_disabled_writes_nothing(tmp_path):
    with MetricsLogger(tmp_path / "run", enabled=False, tensorboard=True) as logger:
        logger.log({"step": 1, "train_loss": 1.0})
    assert not (tmp_path / "run").exists()


def test_resume_drops_rows_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "train_loss": 10.0 - s / 10} for s in range(0, 60, 10)]
    # A crash mid-write leaves the last line cut short.
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 60, "trai')
    with MetricsLogger(tmp_path, resume_step=30) as logger:
        assert [r["step"] for r in _read(path)] == [0, 10, 20, 30]
        logger.log({"step": 40, "train_loss": 0.5})
    assert [r["step"] for r in _read(path)] == [0, 10, 20, 30, 40]
    assert _read(path)[-1]["train_loss"] == 0.5  # the resumed run's row, not the crashed one's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]  # no temp file left
    # Without resume_step the rows stay; only a cut-short last line goes.
    path.write_text(path.read_text() + '{"step": 5')
    MetricsLogger(tmp_path).close()
    assert [r["step"] for r in _read(path)] == [0, 10, 20, 30, 40]


def test_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricsLogger(tmp_path, tensorboard=True) as logger:
        logger.log({"step": 1, "train_loss": 2.5, "lr": 0.1, "note": "text", "flag": True})
        logger.log({"step": 2, "train_loss": 2.0, "val_loss": 2.2})
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["lr", "train_loss", "val_loss"]  # numbers only
    loss = acc.Scalars("train_loss")
    assert [(e.step, e.value) for e in loss] == [(1, 2.5), (2, 2.0)]


def test_tensorboard_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=re.escape("pip install -e '.[tensorboard]'")):
        MetricsLogger(tmp_path, tensorboard=True)
    assert issubclass(ConfigError, ValueError)  # the CLI shows it as one line


def test_log_to_file(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="scratchgpt")
    logger = logging.getLogger("scratchgpt")
    handlers = list(logger.handlers)
    with log_to_file(tmp_path / "run") as path:
        logging.getLogger("scratchgpt.training.trainer").info("step %d: loss %.2f", 5, 1.25)
        logging.getLogger("scratchgpt").warning("careful")
    logging.getLogger("scratchgpt.training").info("after the block")
    assert path == tmp_path / "run" / "train.log"
    lines = path.read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(stamp + r" INFO step 5: loss 1\.25", lines[0])
    assert re.fullmatch(stamp + " WARNING careful", lines[1])
    assert len(lines) == 2
    assert logger.handlers == handlers  # removed again
    with log_to_file(tmp_path / "run"):  # appends
        logging.getLogger("scratchgpt").info("second run")
    assert path.read_text().splitlines()[2].endswith("INFO second run")


def test_log_to_file_opens_info_when_logging_is_unconfigured(tmp_path, monkeypatch):
    # A library call with no logging set up: root has no handlers, the logger would drop INFO.
    root, logger = logging.getLogger(), logging.getLogger("scratchgpt")
    monkeypatch.setattr(root, "handlers", [])
    levels = root.level, logger.level
    # setLevel, not setattr: it also clears the loggers' cached isEnabledFor answers.
    root.setLevel(logging.WARNING)
    logger.setLevel(logging.NOTSET)
    try:
        with log_to_file(tmp_path) as path:
            logging.getLogger("scratchgpt.x").info("progress")
        assert path.read_text().rstrip().endswith("INFO progress")
        assert logger.level == logging.NOTSET  # restored
    finally:
        root.setLevel(levels[0])
        logger.setLevel(levels[1])
