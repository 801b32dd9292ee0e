"""Plots: the analysis numbers behind them, the PNGs they write, and `scratchgpt viz`."""

import json
import struct
import sys

import pytest
import torch

from scratchgpt import viz
from scratchgpt.analysis import attention_weights, hidden_states, layer_statistics
from scratchgpt.checkpoint import save_checkpoint
from scratchgpt.cli import main
from scratchgpt.config import preset
from scratchgpt.model import GPTModel
from scratchgpt.tokenizers import CharTokenizer

pytest.importorskip("matplotlib")  # viz imports it on first use

TEXT = "the cat sat on the mat"


def png_size(path):
    """(width, height) from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz .,\n")
    model = GPTModel(preset("tiny", vocab_size=tok.vocab_size, n_layers=3)).eval()
    return model, tok


@pytest.fixture(scope="module")
def checkpoint(tiny, tmp_path_factory):
    model, tok = tiny
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(run / "checkpoint", model, tok, metadata={"step": 3})
    rows = [{"step": s, "train_loss": 3.0 / s, "val_loss": 3.2 / s} for s in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def _check_causal_maps(maps: torch.Tensor) -> None:
    """(..., T, T) attention maps: rows sum to 1 over keys, nothing above the diagonal."""
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))
    assert torch.equal(maps.triu(diagonal=1), torch.zeros_like(maps))
    T = maps.size(-1)
    assert (maps[..., torch.ones(T, T, dtype=torch.bool).tril()] > 0).all()  # the past: all read


def test_attention_weights_of_every_layer_and_head(tiny):
    model, tok = tiny
    idx = torch.tensor([tok.encode(TEXT)])
    maps = attention_weights(model, idx)
    assert maps.shape == (3, 1, 4, len(TEXT), len(TEXT))  # (L, B, nh, T, T)
    _check_causal_maps(maps)
    # Reading the weights does not change what the model computes, nor its mode.
    model.train()
    attention_weights(model, idx)
    assert model.training
    model.eval()


def test_attention_weights_follow_the_padding_mask(tiny):
    model, _ = tiny
    idx = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]])
    maps = attention_weights(model, idx, pad_offset=torch.tensor([2, 0]))
    assert torch.equal(maps[:, 0, :, 2:, :2], torch.zeros(3, 4, 3, 2))  # real rows skip pads
    alone = attention_weights(model, idx[:1, 2:])
    torch.testing.assert_close(maps[:, 0, :, 2:, 2:], alone[:, 0])


def test_hidden_states_and_layer_statistics(tiny):
    model, tok = tiny
    idx = torch.tensor([tok.encode(TEXT)])
    states = hidden_states(model, idx)  # (L + 1, B, T, C)
    assert states.shape == (4, 1, len(TEXT), 32)
    with torch.no_grad():
        logits = model.out_head(model.final_norm(states[-1]))
        torch.testing.assert_close(logits, model(idx))  # the last state is what the head reads
    stats = layer_statistics(states)
    assert stats.norms.shape == (4,) and stats.similarity.shape == (4, 4)
    torch.testing.assert_close(stats.similarity.diagonal(), torch.ones(4))
    torch.testing.assert_close(stats.similarity, stats.similarity.T)


def test_each_plot_writes_a_png_of_the_expected_size(tiny, tmp_path):
    model, tok = tiny
    fig = viz.plot_model_attention(model, tok, TEXT, layer=2, head=1, out=tmp_path / "a.png")
    assert png_size(tmp_path / "a.png") == (600, 500)
    plotted = torch.as_tensor(fig.axes[0].images[0].get_array())  # the numbers drawn
    _check_causal_maps(plotted)
    fig = viz.plot_model_attention(model, tok, TEXT, layer=0, head=None, out=tmp_path / "h.png")
    assert png_size(tmp_path / "h.png") == (1280, 380)  # 4 heads in a row
    heads = [torch.as_tensor(ax.images[0].get_array()) for ax in fig.axes if ax.images]
    assert len(heads) == 4
    _check_causal_maps(torch.stack(heads))

    viz.plot_positional_encoding(learned=model.pos_emb.weight, out=tmp_path / "p.png")
    assert png_size(tmp_path / "p.png") == (1500, 420)
    rows = [{"step": s, "train_loss": 1 / s, "val_loss": 1.1 / s} for s in (1, 2, 3)]
    viz.plot_training_curves(rows, out=tmp_path / "c.png")
    assert png_size(tmp_path / "c.png") == (550, 400)
    rows = [{**r, "train_acc": 0.5, "val_acc": 0.6} for r in rows]
    viz.plot_training_curves(rows, out=tmp_path / "c2.png", dpi=50)
    assert png_size(tmp_path / "c2.png") == (550, 200)  # two panels at half the dpi
    viz.plot_model_layers(model, tok, TEXT, out=tmp_path / "l.png")
    assert png_size(tmp_path / "l.png") == (1100, 420)


def test_plot_errors_are_clear(tiny, tmp_path, monkeypatch, capsys):
    model, tok = tiny
    with pytest.raises(ValueError, match=r"layer=3: the model has 3 layers \(0 to 2\)"):
        viz.plot_model_attention(model, tok, TEXT, layer=3)
    with pytest.raises(ValueError, match="head=4"):
        viz.plot_model_attention(model, tok, TEXT, head=4)
    with pytest.raises(ValueError, match="PNG"):
        viz.plot_training_curves([{"step": 1, "train_loss": 1.0}], out=tmp_path / "c.jpg")
    with pytest.raises(ValueError, match="no metrics"):
        viz.plot_training_curves(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if not installed
    with pytest.raises(ImportError, match=r"scratchgpt\[plot\]"):
        viz.plot_positional_encoding()
    # the command line says it in one line, not a traceback
    assert main(["viz", "positions", "--out", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err
    assert "scratchgpt[plot]" in err and "Traceback" not in err


def test_viz_cli(checkpoint, tmp_path, capsys):
    run = str(checkpoint)
    out = tmp_path / "a.png"
    base = ["viz", "attention", "--checkpoint", run, "--text", TEXT]
    assert main([*base, "--layer", "1", "--head", "3", "--out", str(out)]) == 0
    assert png_size(out) == (600, 500)
    assert main([*base, "--all-heads", "--out", str(tmp_path / "h.png")]) == 0
    assert main(["viz", "positions", "--out", str(tmp_path / "p.png"), "--checkpoint", run]) == 0
    assert main(["viz", "curves", run, "--out", str(tmp_path / "c.png")]) == 0
    assert png_size(tmp_path / "c.png") == (550, 400)
    layers = ["viz", "layers", "--checkpoint", run, "--text", TEXT]
    assert main([*layers, "--out", str(tmp_path / "l.png")]) == 0
    # --init-from takes a checkpoint too (and GPT-2, see the next test)
    init = ["viz", "attention", "--init-from", run, "--text", TEXT]
    assert main([*init, "--out", str(tmp_path / "i.png")]) == 0
    capsys.readouterr()
    assert main([*base, "--layer", "7", "--out", str(out)]) == 2
    assert "layer=7" in capsys.readouterr().err
    assert main(["info", "--checkpoint", run, "--breakdown"]) == 0
    assert "matches" in capsys.readouterr().out


def _write_rows(run, rows):
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _lines_of(ax):
    """{legend label: (x, y)} of the curves drawn on ``ax``."""
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}


def test_plot_run_reads_the_new_schema(tmp_path):
    # The trainer's rows: train rows every interval, val_loss only at the evaluations.
    rows = []
    for step in range(10, 110, 10):
        row = {"step": step, "tokens": step * 2048, "train_loss": 5.0 - step / 50, "lr": 1e-3}
        row |= {"grad_norm": 0.9, "tokens_per_sec": 5e4, "step_ms": 40.0, "mfu": 0.3}
        if step % 50 == 0:
            row |= {"val_loss": 5.2 - step / 50, "val_ppl": 100.0}
        rows.append(row)
    _write_rows(tmp_path / "run", rows)
    path = viz.plot_run(tmp_path / "run")
    assert path == tmp_path / "run" / "loss.png"
    assert png_size(path) == (1100, 400)
    assert path.stat().st_size > 20_000  # curves, labels, legends: not a blank canvas


def test_plot_run_curves_and_both_schemas(tmp_path, monkeypatch):
    drawn = []
    save = viz.save_figure
    monkeypatch.setattr(viz, "save_figure", lambda fig, out: drawn.append(fig) or save(fig, out))
    new = [
        {"step": 10, "tokens": 640, "train_loss": 4.0},
        {"step": 20, "tokens": 1280, "train_loss": 3.0, "val_loss": 3.5, "val_ppl": 33.1},
        {"step": 30, "tokens": 1920, "train_loss": 2.5},
    ]
    _write_rows(tmp_path / "new", new)
    out = viz.plot_run(tmp_path / "new", out=tmp_path / "figs" / "new.png")
    assert out == tmp_path / "figs" / "new.png" and png_size(out) == (1100, 400)
    by_step, by_tokens = (_lines_of(ax) for ax in drawn[-1].axes)
    assert by_step["train"] == ([10, 20, 30], [4.0, 3.0, 2.5])
    assert by_step["validation"] == ([20], [3.5])  # only the row that has it
    assert by_tokens["train"] == ([640, 1280, 1920], [4.0, 3.0, 2.5])
    assert by_tokens["validation"] == ([1280], [3.5])

    # The old trainer's rows: every row evaluated, no tokens (taken from train_config.json).
    old = [
        {"step": s, "train_loss": 4.0 - s / 100, "val_loss": 4.2 - s / 100, "val_ppl": 60.0}
        | {"lr": 1e-3, "tokens_per_s": 900.0}
        for s in (0, 100, 200)
    ]
    _write_rows(tmp_path / "old", old)
    settings = {"model": {"context_length": 128}, "training": {"batch_size": 32}}
    (tmp_path / "old" / "train_config.json").write_text(json.dumps(settings))
    viz.plot_run(tmp_path / "old")
    by_step, by_tokens = (_lines_of(ax) for ax in drawn[-1].axes)
    assert by_step["validation"] == ([0, 100, 200], [4.2, 3.2, 2.2])
    assert by_tokens["train"][0] == [0, 100 * 32 * 128, 200 * 32 * 128]
    assert "step × batch × context" in drawn[-1].axes[1].get_xlabel()
    # No train_config.json either: the step panel still, and the tokens panel says why not.
    (tmp_path / "old" / "train_config.json").unlink()
    assert png_size(viz.plot_run(tmp_path / "old")) == (1100, 400)
    assert not drawn[-1].axes[1].lines
    assert "no token counts" in drawn[-1].axes[1].texts[0].get_text()


def test_plot_run_errors(tmp_path):
    with pytest.raises(ValueError, match="no metrics"):
        viz.plot_run(tmp_path)  # a directory without metrics.jsonl
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty"):
        viz.plot_run(tmp_path)
    with pytest.raises(ValueError, match="not a run directory"):
        viz.plot_run(tmp_path / "missing")
    (tmp_path / "metrics.jsonl").write_text('{"tokens": 5, "train_loss": 1.0}\n')
    with pytest.raises(ValueError, match="'step'"):
        viz.plot_run(tmp_path)


def test_training_curves_read_the_new_schema(tmp_path):
    rows = [
        {"step": 10, "tokens": 640, "train_loss": 4.0},
        {"step": 20, "tokens": 1280, "train_loss": 3.0, "val_loss": 3.5},
    ]
    fig = viz.plot_training_curves(rows, out=tmp_path / "c.png")
    curves = _lines_of(fig.axes[0])
    assert curves["train"] == ([10, 20], [4.0, 3.0])
    assert curves["validation"] == ([20], [3.5])
    assert png_size(tmp_path / "c.png") == (550, 400)


def test_plot_cli(tmp_path, capsys):
    _write_rows(tmp_path / "run", [{"step": 1, "tokens": 64, "train_loss": 2.0, "val_loss": 2.1}])
    assert main(["plot", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'run' / 'loss.png'}"
    assert png_size(tmp_path / "run" / "loss.png") == (1100, 400)
    assert main(["plot", str(tmp_path / "run"), "--out", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "x.png").is_file()
    assert main(["plot", str(tmp_path)]) == 2  # no metrics.jsonl: one line, no traceback
    err = capsys.readouterr().err
    assert "scratchgpt plot: error: no metrics" in err and "Traceback" not in err


@pytest.mark.hf
def test_gpt2_attention_maps_equal_transformers(tmp_path, shared_data):
    """Our maps of a GPT-2 (loaded through the real converter) == transformers' attentions."""
    pytest.importorskip("transformers")
    from .hf_models import copy_gpt2_tokenizer, random_hf_model

    hf = random_hf_model(n_layer=2, n_embd=32, n_head=4, vocab_size=50257, n_positions=64)
    hf.config._attn_implementation = "eager"  # the path that returns the weights
    hf.save_pretrained(tmp_path / "gpt2")
    copy_gpt2_tokenizer(
        tmp_path / "gpt2", shared_data("gpt2-encoder.json"), shared_data("gpt2-vocab.bpe")
    )
    from scratchgpt.pretrained import load_gpt2

    model, tok = load_gpt2(tmp_path / "gpt2")
    idx = torch.tensor([tok.encode("Every effort moves you")])
    ours = attention_weights(model, idx)  # (L, 1, nh, T, T)
    with torch.no_grad():
        theirs = hf(idx, output_attentions=True).attentions  # L x (1, nh, T, T)
    torch.testing.assert_close(ours, torch.stack(theirs), atol=1e-5, rtol=1e-4)
    out = tmp_path / "gpt2.png"
    args = ["viz", "attention", "--init-from", str(tmp_path / "gpt2"), "--text", "Every effort"]
    assert main([*args, "--layer", "1", "--head", "2", "--out", str(out)]) == 0
    assert png_size(out) == (600, 500)
