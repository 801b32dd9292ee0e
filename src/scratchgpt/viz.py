"""Pictures of what a transformer does: attention maps, positional encodings, training
curves, and how the token vectors change from layer to layer (seed 001's visualisations).

Every plotting function returns a matplotlib ``Figure`` and, given ``out=``, writes it as a
PNG of exactly ``figsize * dpi`` pixels (``plot_run``, behind ``scratchgpt plot``, always
writes one and returns its path). Figures are drawn with the Agg renderer on a ``Figure``
object, never through ``pyplot``: nothing opens a window, nothing changes matplotlib's global
backend (so a notebook's inline display keeps working), and figures are not kept alive by
pyplot's registry. matplotlib is the optional ``plot`` extra, imported on first use.

The numbers come from :mod:`scratchgpt.analysis` and :mod:`scratchgpt.model.positional`;
this module only draws them.

Shapes: L layers, nh heads, T query tokens, S key tokens, C = emb_dim.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .analysis import LayerStats, attention_weights, hidden_states, layer_statistics
from .errors import ConfigError, DataError, missing_extra
from .model.positional import similarity_by_distance, sinusoidal_encoding, sinusoidal_table
from .tokenizers import Tokenizer
from .tokenizers.tools import token_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .classifier import TextClassifier

log = logging.getLogger(__name__)

DPI = 100


def new_figure(figsize: tuple[float, float], *, dpi: int = DPI) -> Figure:
    """An empty figure drawn by Agg (a PNG renderer): no window, no pyplot state."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise missing_extra("matplotlib", "plot", "plotting") from exc
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as the figure's canvas
    return fig


def save_figure(fig: Figure, out: str | Path) -> Path:
    """Write ``fig`` as a PNG of exactly figsize * dpi pixels (no tight-bbox cropping)."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"{out}: figures are written as PNG; give a path ending in .png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=fig.dpi, format="png")
    log.debug("wrote %s", out)
    return out


def _finish(fig: Figure, out: str | Path | None) -> Figure:
    if out is not None:
        save_figure(fig, out)
    return fig


def token_labels(tokenizer: Tokenizer, ids: Sequence[int]) -> list[str]:
    """Readable tick labels: each token's text, spaces as '·' and newlines as '\\n'."""
    return [token_text(tokenizer, i).replace(" ", "·").replace("\n", "\\n") or "∅" for i in ids]


# --- attention ----------------------------------------------------------------------------------


def _draw_attention(
    ax: Any,
    weights: torch.Tensor,
    queries: Sequence[str] | None,
    keys: Sequence[str] | None,
    *,
    title: str,
    ticks: bool = True,
) -> Any:
    image = ax.imshow(weights.detach().float().cpu().numpy(), cmap="viridis", vmin=0.0)
    ax.set_title(title, fontsize=9)
    T, S = weights.shape
    if ticks and queries is not None and T <= 64:
        ax.set_yticks(range(T), list(queries), fontsize=7)
    if ticks and keys is not None and S <= 64:
        ax.set_xticks(range(S), list(keys), fontsize=7, rotation=90)
    ax.set_xlabel("key (attended to)", fontsize=8)
    ax.set_ylabel("query (attending)", fontsize=8)
    if ticks and T <= 12 and S <= 12:  # small maps: print the weights in the cells
        top = max(weights.max().item(), 1e-9)
        for t in range(T):
            for s in range(S):
                value = weights[t, s].item()
                color = "black" if value > 0.6 * top else "white"
                ax.text(s, t, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
    return image


def plot_attention(
    weights: torch.Tensor,
    *,
    tokens: Sequence[str] | None = None,
    key_tokens: Sequence[str] | None = None,
    title: str = "attention weights",
    out: str | Path | None = None,
    figsize: tuple[float, float] = (6.0, 5.0),
    dpi: int = DPI,
) -> Figure:
    """One attention map (T, S) as a heatmap: row t is how query token t spreads its
    attention over the keys (each row sums to 1). ``key_tokens`` default to ``tokens``."""
    if weights.dim() != 2:
        raise ValueError(f"expected one (queries, keys) map, got shape {tuple(weights.shape)}")
    fig = new_figure(figsize, dpi=dpi)
    ax = fig.subplots()
    image = _draw_attention(ax, weights, tokens, key_tokens or tokens, title=title)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _finish(fig, out)


def plot_attention_heads(
    weights: torch.Tensor,
    *,
    tokens: Sequence[str] | None = None,
    title: str = "attention heads",
    out: str | Path | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = DPI,
) -> Figure:
    """All heads of one layer, (nh, T, S), as a grid of heatmaps: how the heads differ."""
    if weights.dim() != 3:
        raise ValueError(f"expected (heads, queries, keys) maps, got shape {tuple(weights.shape)}")
    nh = weights.size(0)
    cols = min(nh, 4)
    rows = math.ceil(nh / cols)
    fig = new_figure(figsize or (3.2 * cols, 3.4 * rows + 0.4), dpi=dpi)
    fig.suptitle(title, fontsize=11)
    axes = fig.subplots(rows, cols, squeeze=False)
    small = weights.size(-1) <= 16  # label the tokens only while they stay legible
    for h, ax in enumerate(axes.flat):
        if h >= nh:
            ax.axis("off")
            continue
        _draw_attention(ax, weights[h], tokens, tokens, title=f"head {h}", ticks=small)
        if not small:
            ax.set_xticks([])
            ax.set_yticks([])
    return _finish(fig, out)


def _check_layer_head(n_layers: int, n_heads: int, layer: int, head: int | None) -> None:
    if not 0 <= layer < n_layers:
        raise ConfigError(f"layer={layer}: the model has {n_layers} layers (0 to {n_layers - 1})")
    if head is not None and not 0 <= head < n_heads:
        raise ConfigError(f"head={head}: the model has {n_heads} heads (0 to {n_heads - 1})")


def _encode_for_model(model: Any, tokenizer: Tokenizer, text: str) -> torch.Tensor:
    ids = tokenizer.encode(text)
    if not ids:
        raise DataError("the text is empty after tokenisation: give a text to look at")
    limit = model.cfg.context_length
    if len(ids) > limit:
        log.warning("the text is %d tokens; keeping the first %d", len(ids), limit)
        ids = ids[:limit]
    return torch.tensor([ids], device=model.tok_emb.weight.device)


def plot_model_attention(
    model: Any,
    tokenizer: Tokenizer,
    text: str,
    *,
    layer: int = 0,
    head: int | None = 0,
    out: str | Path | None = None,
    dpi: int = DPI,
) -> Figure:
    """A GPT's attention on ``text`` at block ``layer`` (0-based): one head's map, or all
    heads of the layer as a grid with ``head=None``. Works for any GPTModel (a trained
    checkpoint, a loaded GPT-2)."""
    idx = _encode_for_model(model, tokenizer, text)
    _check_layer_head(model.cfg.n_layers, model.cfg.n_heads, layer, head)
    weights = attention_weights(model, idx)[layer, 0]  # (L, 1, nh, T, T) -> (nh, T, T)
    tokens = token_labels(tokenizer, idx[0].tolist())
    return _plot_weights(weights, tokens, layer=layer, head=head, out=out, dpi=dpi)


def _plot_weights(
    weights: torch.Tensor,
    tokens: list[str],
    *,
    layer: int,
    head: int | None,
    out: str | Path | None,
    dpi: int,
) -> Figure:
    if head is None:
        return plot_attention_heads(
            weights, tokens=tokens, title=f"layer {layer}, all heads", out=out, dpi=dpi
        )
    return plot_attention(
        weights[head], tokens=tokens, title=f"layer {layer}, head {head}", out=out, dpi=dpi
    )


def plot_classifier_attention(
    classifier: TextClassifier,
    text: str,
    *,
    layer: int = 0,
    head: int | None = 0,
    out: str | Path | None = None,
    dpi: int = DPI,
) -> Figure:
    """The encoder classifier's attention on ``text``: bidirectional, so the maps fill the
    whole square (no causal triangle); rows still sum to 1."""
    ids, mask = classifier.encode([text])
    cfg = classifier.model.cfg
    _check_layer_head(cfg.n_layers, cfg.n_heads, layer, head)
    weights = attention_weights(classifier.model, ids, padding_mask=mask)[layer, 0]  # (nh, T, T)
    tokens = token_labels(classifier.tokenizer, ids[0].tolist())
    return _plot_weights(weights, tokens, layer=layer, head=head, out=out, dpi=dpi)


# --- positional encodings ---------------------------------------------------------------------


def plot_positional_encoding(
    *,
    n_positions: int = 64,
    dim: int = 64,
    learned: torch.Tensor | None = None,
    checkpoint: str | Path | None = None,
    out: str | Path | None = None,
    figsize: tuple[float, float] = (15.0, 4.2),
    dpi: int = DPI,
) -> Figure:
    """The sinusoidal encoding: the (T, C) table as a heatmap, a few of its waves, and the
    similarity of two positions against their distance. ``learned`` (T', C') adds a learned
    table's similarity curve (e.g. ``model.pos_emb.weight``) for comparison; ``checkpoint``
    takes that table from a trained GPT."""
    if checkpoint is not None:
        from .checkpoint import load_checkpoint

        model, _ = load_checkpoint(checkpoint)
        if model.cfg.pos_encoding != "learned":
            raise ConfigError(f"{checkpoint} has no learned position table to compare")
        learned = model.pos_emb.weight[:n_positions]
    table = sinusoidal_table(n_positions, dim)  # (T, C)
    fig = new_figure(figsize, dpi=dpi)
    ax_map, ax_waves, ax_sim = fig.subplots(1, 3)
    # (T, C) -> (C, T): dimensions down, positions across, as the waves run along a row.
    image = ax_map.imshow(table.T.numpy(), aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
    ax_map.set_title("sinusoidal PE: (dimension, position)", fontsize=10)
    ax_map.set_xlabel("position")
    ax_map.set_ylabel("dimension (sin even, cos odd)")
    fig.colorbar(image, ax=ax_map, shrink=0.8)
    # The waves drawn through fractional positions too, so they look like the curves they are.
    fine = torch.linspace(0, n_positions - 1, 8 * n_positions)  # (8T,)
    waves = sinusoidal_encoding(fine, dim)  # (8T, C)
    for d in sorted({2, min(8, dim - 2), min(16, dim - 2), min(dim // 2, dim - 2)}):
        ax_waves.plot(fine.numpy(), waves[:, d].numpy(), label=f"dim {d} (sin)")
    ax_waves.set_title("each dimension pair is one wave, slower and slower", fontsize=10)
    ax_waves.set_xlabel("position")
    ax_waves.legend(fontsize=7, loc="lower left")
    ax_sim.plot(range(n_positions), similarity_by_distance(table).numpy(), label="sinusoidal")
    if learned is not None:
        learned = learned.detach().float().cpu()
        curve = similarity_by_distance(learned)  # (T',)
        ax_sim.plot(range(len(curve)), curve.numpy(), label="learned")
    ax_sim.set_title("cosine similarity vs distance", fontsize=10)
    ax_sim.set_xlabel("distance |i - j| (positions)")
    ax_sim.set_ylabel("mean cosine similarity")
    ax_sim.legend(fontsize=8)
    return _finish(fig, out)


# --- training curves ----------------------------------------------------------------------------


def read_metrics(source: str | Path) -> list[dict[str, float]]:
    """The rows of a run's metrics.jsonl (a run directory, a classifier directory, or the file)."""
    path = Path(source)
    file = path / "metrics.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise DataError(
            f"no metrics at {str(path)!r}: expected a run directory holding metrics.jsonl "
            "(written by `scratchgpt train` and `scratchgpt classify train`) or the file"
        )
    rows = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{file}, line {n}: not JSON ({exc})") from exc
    if not rows:
        raise DataError(f"{file} is empty: the run has not logged anything yet")
    return rows


def _series(rows: Sequence[Mapping[str, Any]], x: str, y: str) -> tuple[list[Any], list[Any]]:
    """The (x, y) points of the rows that have both keys: validation losses are only on the
    evaluation rows, and the training rows between them have none."""
    points = [(r[x], r[y]) for r in rows if r.get(x) is not None and r.get(y) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training_curves(
    history: Sequence[Mapping[str, float]] | str | Path,
    *,
    title: str = "training",
    out: str | Path | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = DPI,
) -> Figure:
    """Train and validation loss against the step (and accuracy, when the rows have it).

    ``history``: rows with ``step``, ``train_loss`` and ``val_loss`` (a ``TrainResult``'s
    history, a classifier's), or a run directory / metrics.jsonl to read them from. A row may
    lack a curve's key (the trainer logs ``val_loss`` only at evaluations): each curve is
    drawn through the rows that have it. Training loss well below validation loss is
    overfitting: the model memorises its training text.
    """
    rows = read_metrics(history) if isinstance(history, (str, Path)) else list(history)
    if not rows or any("step" not in r for r in rows):
        raise DataError("training curves need rows with a 'step' key and losses")
    # A classifier's last row ("final") scores whole splits, test included: it is a result,
    # not a point on the curves, and is printed in the title instead.
    final = next((r for r in rows if r.get("final")), None)
    rows = [r for r in rows if not r.get("final")]
    if final is not None and final.get("test_acc") is not None:
        title = f"{title} (test accuracy {final['test_acc']:.2%})"
    accuracy_keys = [k for k in ("train_acc", "val_acc") if any(k in r for r in rows)]
    panels = 2 if accuracy_keys else 1
    fig = new_figure(figsize or (5.5 * panels, 4.0), dpi=dpi)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        steps, values = _series(rows, "step", key)
        if steps:
            axes[0].plot(steps, values, marker="o", markersize=3, label=label)
    axes[0].set_title(f"{title}: loss", fontsize=10)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("cross-entropy")
    axes[0].legend(fontsize=8)
    if accuracy_keys:
        for key in accuracy_keys:
            label = "train" if key == "train_acc" else "validation"
            axes[1].plot(*_series(rows, "step", key), marker="o", markersize=3, label=label)
        axes[1].set_title(f"{title}: accuracy", fontsize=10)
        axes[1].set_xlabel("step")
        axes[1].legend(fontsize=8)
    return _finish(fig, out)


def _tokens_per_step(run_dir: Path) -> int | None:
    """Tokens per optimiser step from the run's train_config.json (batch x context), for
    runs whose rows predate the ``tokens`` field; None where the file does not say."""
    try:
        settings = json.loads((run_dir / "train_config.json").read_text(encoding="utf-8"))
        return int(settings["training"]["batch_size"]) * int(settings["model"]["context_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def plot_run(run_dir: str | Path, *, out: str | Path | None = None) -> Path:
    """A training run's loss curves as a PNG (default ``run_dir/loss.png``); returns its path.

    A classifier's run: loss and accuracy (train and validation) by step, the test accuracy
    in the title. A language model's, two panels: loss against the optimiser step, and
    against the tokens seen (what compute buys: runs with different batch sizes line up on
    this axis). Each has the training loss
    and, at the evaluation rows, the validation loss. Reads ``run_dir/metrics.jsonl`` as the
    trainer writes it now (``tokens`` in every row) and as older runs wrote it (no
    ``tokens``: taken as step x batch_size x context_length from ``train_config.json``).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{str(run_dir)!r} is not a run directory")
    rows = read_metrics(run_dir)
    if any("step" not in r for r in rows):
        raise DataError(f"{run_dir / 'metrics.jsonl'}: every row needs a 'step'")
    if any("val_acc" in r for r in rows):  # a classifier: loss and accuracy by step
        fig = plot_training_curves(rows, title=run_dir.name)
        return save_figure(fig, run_dir / "loss.png" if out is None else out)
    xlabel = "tokens seen"
    if not all("tokens" in r for r in rows):
        per_step = _tokens_per_step(run_dir)
        rows = [
            {**r, "tokens": r.get("tokens", None if per_step is None else r["step"] * per_step)}
            for r in rows
        ]
        xlabel = "tokens seen (step × batch × context)"
    fig = new_figure((11.0, 4.0))
    ax_step, ax_tokens = fig.subplots(1, 2)
    for ax, x in ((ax_step, "step"), (ax_tokens, "tokens")):
        for key, label, style in (
            ("train_loss", "train", {"linewidth": 1.0}),
            ("val_loss", "validation", {"marker": "o", "markersize": 3}),
        ):
            xs, ys = _series(rows, x, key)
            if xs:
                ax.plot(xs, ys, label=label, **style)
        ax.set_ylabel("cross-entropy")
        if ax.lines:
            ax.legend(fontsize=8)
    ax_step.set_title(f"{run_dir.name}: loss by step", fontsize=10)
    ax_step.set_xlabel("step")
    ax_tokens.set_title(f"{run_dir.name}: loss by tokens seen", fontsize=10)
    ax_tokens.set_xlabel(xlabel)
    if not ax_tokens.lines:
        ax_tokens.text(
            0.5,
            0.5,
            "no token counts in this run",
            ha="center",
            va="center",
            transform=ax_tokens.transAxes,
        )
    return save_figure(fig, run_dir / "loss.png" if out is None else out)


# --- layer analysis -----------------------------------------------------------------------------


def plot_layer_stats(
    stats: LayerStats,
    *,
    title: str = "layer analysis",
    out: str | Path | None = None,
    figsize: tuple[float, float] = (11.0, 4.2),
    dpi: int = DPI,
) -> Figure:
    """Hidden-state norm per layer, and the cosine similarity of the same token's vectors
    between every two layers (see :class:`~scratchgpt.analysis.LayerStats`)."""
    fig = new_figure(figsize, dpi=dpi)
    ax_norm, ax_sim = fig.subplots(1, 2)
    depth = range(len(stats.norms))
    ax_norm.plot(depth, stats.norms.numpy(), marker="o")
    ax_norm.set_title(f"{title}: mean hidden-state norm", fontsize=10)
    ax_norm.set_xlabel("layer (0 = embeddings)")
    ax_norm.set_ylabel("L2 norm")
    ax_norm.set_xticks(list(depth))
    image = ax_sim.imshow(stats.similarity.numpy(), cmap="magma", vmin=-1.0, vmax=1.0)
    ax_sim.set_title("cosine similarity between layers", fontsize=10)
    ax_sim.set_xticks(list(depth))
    ax_sim.set_yticks(list(depth))
    if len(depth) <= 13:  # the values themselves, while the cells are big enough to read
        for i in depth:
            for j in depth:
                value = stats.similarity[i, j].item()
                ax_sim.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if value > 0.3 else "white",
                )
    ax_sim.set_xlabel("layer")
    ax_sim.set_ylabel("layer")
    fig.colorbar(image, ax=ax_sim, shrink=0.8)
    return _finish(fig, out)


def plot_model_layers(
    model: Any,
    tokenizer: Tokenizer,
    text: str,
    *,
    out: str | Path | None = None,
    dpi: int = DPI,
) -> Figure:
    """The layer analysis of a GPT on ``text`` (hidden states from :mod:`scratchgpt.analysis`)."""
    idx = _encode_for_model(model, tokenizer, text)
    stats = layer_statistics(hidden_states(model, idx))
    return plot_layer_stats(stats, title=f"{idx.size(1)} tokens", out=out, dpi=dpi)


def plot_classifier_layers(
    classifier: TextClassifier,
    text: str,
    *,
    out: str | Path | None = None,
    dpi: int = DPI,
) -> Figure:
    """The layer analysis of the encoder classifier on ``text``."""
    ids, mask = classifier.encode([text])
    stats = layer_statistics(hidden_states(classifier.model, ids, padding_mask=mask), mask=mask)
    return plot_layer_stats(stats, title=f"{ids.size(1)} tokens", out=out, dpi=dpi)


# --- a saved model, by path: a GPT checkpoint, GPT-2, or a trained classifier ---------------------


def plot_attention_of(
    checkpoint: str | Path | None,
    text: str,
    *,
    init_from: str | Path | None = None,
    layer: int = 0,
    head: int | None = 0,
    out: str | Path | None = None,
) -> Figure:
    """:func:`plot_model_attention` or :func:`plot_classifier_attention` for whatever model
    ``checkpoint`` holds (a GPT checkpoint or run, a classifier run; default: the latest run),
    or for the pretrained weights ``init_from``."""
    classifier = _classifier_at(checkpoint)
    if classifier is not None:
        return plot_classifier_attention(classifier, text, layer=layer, head=head, out=out)
    model, tokenizer = _gpt_at(checkpoint, init_from)
    return plot_model_attention(model, tokenizer, text, layer=layer, head=head, out=out)


def plot_layers_of(
    checkpoint: str | Path | None,
    text: str,
    *,
    init_from: str | Path | None = None,
    out: str | Path | None = None,
) -> Figure:
    """:func:`plot_model_layers` or :func:`plot_classifier_layers` for the model at
    ``checkpoint`` (as :func:`plot_attention_of`)."""
    classifier = _classifier_at(checkpoint)
    if classifier is not None:
        return plot_classifier_layers(classifier, text, out=out)
    model, tokenizer = _gpt_at(checkpoint, init_from)
    return plot_model_layers(model, tokenizer, text, out=out)


def _classifier_at(checkpoint: str | Path | None) -> TextClassifier | None:
    from .classifier import TextClassifier, is_classifier

    if checkpoint is None or not is_classifier(checkpoint):
        return None
    return TextClassifier.load(checkpoint)


def _gpt_at(checkpoint: str | Path | None, init_from: str | Path | None) -> tuple[Any, Tokenizer]:
    from .inference import load_model

    model, tokenizer = load_model(checkpoint, init_from=init_from, device="cpu")
    if tokenizer is None:
        raise ConfigError("this model has no tokenizer to turn the text into ids")
    return model, tokenizer
