"""partition.png: client sizes above a labels x clients heatmap, to see skew at a glance.

Each column is a client, coloured by the share of its samples in each label (target decile for
regression). Up to 100 clients are drawn in client order; beyond that clients are sorted by their
largest label (so skew shows as blocks, IID as an even wash), and beyond MAX_COLUMNS an evenly
spaced sample of that order is drawn.
"""

from pathlib import Path

import numpy as np

from flcli.data.stats import label_counts_from_offsets
from flcli.fileio import atomic_save_figure

ORDERED_UP_TO = 100
MAX_COLUMNS = 1000
MAX_ROW_TICKS = 20
MAX_NAMED = 30  # clients whose own names (partition.json's client_names) label the x axis


def value_counts(partition) -> tuple[np.ndarray, list[str], str]:
    """[clients, rows] counts, the row names, and the rows' axis label."""
    meta = partition.meta
    if meta.get("task", "classification") == "classification":
        counts = np.asarray(meta["label_counts"])
        names = meta.get("classes") or [str(c) for c in range(counts.shape[1])]
        return counts, names, "label"
    y = partition.y_train
    edges = np.unique(np.quantile(y, np.linspace(0, 1, 11)[1:-1]))
    bins = np.searchsorted(edges, y, side="left")  # row i: edges[i - 1] < y <= edges[i]
    counts = label_counts_from_offsets(bins, partition.offsets, len(edges) + 1)
    names = [f"≤ {e:.3g}" for e in edges] + [f"> {edges[-1]:.3g}" if len(edges) else "all"]
    return counts, names, "target decile"


def column_order(counts: np.ndarray) -> tuple[np.ndarray, str]:
    """Which clients to draw, in which order, and how to say so on the x axis."""
    n = len(counts)
    if n <= ORDERED_UP_TO:
        return np.arange(n), "client"
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    top = shares.argmax(axis=1)
    order = np.lexsort((-shares.max(axis=1), top))
    if n > MAX_COLUMNS:
        order = order[np.linspace(0, n - 1, MAX_COLUMNS).round().astype(int)]
        return order, f"clients sorted by largest label ({MAX_COLUMNS} of {n}, evenly spaced)"
    return order, f"clients sorted by largest label (all {n})"


def subtitle(meta: dict) -> str:
    skew = meta["heterogeneity"]
    if "js_divergence" in skew:
        return (
            f"JS divergence {skew['js_divergence']:.3f} · labels per client "
            f"{skew['labels_per_client']:.1f} of {meta['num_classes']} · "
            f"size CV {skew['size_cv']:.2f}"
        )
    return f"size CV {skew['size_cv']:.2f} · target shift {skew['target_shift']:.2f}"


def draw_vertical(meta: dict, out: Path) -> None:
    """A vertical partition: which client holds each feature column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    indices = meta["vertical"]["feature_indices"]
    held = np.zeros((len(indices), meta["num_features"]))
    for client, columns in enumerate(indices):
        held[client, columns] = 1.0
    fig, ax = plt.subplots(
        figsize=(min(4 + 0.12 * held.shape[1], 14), 1.5 + 0.3 * len(indices)),
        constrained_layout=True,
    )
    ax.imshow(held, aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xlabel("feature column")
    ax.set_ylabel("client")
    ax.set_yticks(range(len(indices)))
    ax.set_title(
        f"{meta['dataset']} · vertical · {len(indices)} clients, {meta['num_train']} rows each",
        fontsize=10,
    )
    atomic_save_figure(out, fig, dpi=120)
    plt.close(fig)


def draw_heatmap(partition, out: Path) -> None:
    meta = partition.meta
    if "vertical" in meta:
        draw_vertical(meta, out)
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts, row_names, row_label = value_counts(partition)
    order, x_label = column_order(counts)
    shown = counts[order]
    sizes = shown.sum(axis=1)
    shares = (shown / np.maximum(sizes[:, None], 1)).T  # [rows, clients]
    columns = len(order)
    hidden = ("min_samples", "min_samples_default")
    params = ", ".join(f"{k}={v}" for k, v in meta["params"].items() if k not in hidden)
    if "min_samples" in meta["params"]:
        params += f"; min {meta['params']['min_samples']} samples per client"
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(min(5 + 0.3 * columns, 14), 3 + 0.22 * min(len(row_names), 40)),
        sharex=True,
        gridspec_kw={"height_ratios": [1, 2.6]},
        constrained_layout=True,
    )
    positions = np.arange(columns)
    if columns <= ORDERED_UP_TO:
        top.bar(positions, sizes, width=0.85, color="#4c72b0")
    else:
        top.fill_between(positions, sizes, step="mid", color="#4c72b0", linewidth=0)
    if sizes.max() > 20 * max(np.median(sizes), 1):
        top.set_yscale("log")
        top.set_ylabel("samples (log)")
    else:
        top.set_ylim(0, sizes.max() * 1.08)
        top.set_ylabel("samples")
    top.spines[["top", "right"]].set_visible(False)
    top.set_title(
        f"{meta['dataset']} · {meta['scheme']} ({params}) · {meta['num_clients']} clients\n"
        f"{subtitle(meta)}",
        fontsize=10,
    )
    image = bottom.imshow(
        shares,
        aspect="auto",
        cmap="magma_r",
        vmin=0,
        vmax=1,
        interpolation="nearest",
        extent=(-0.5, columns - 0.5, len(row_names) - 0.5, -0.5),
    )
    names = meta.get("client_names")
    if names and columns <= MAX_NAMED:
        bottom.set_xticks(positions, [names[i] for i in order], rotation=60, fontsize=7)
    elif columns <= ORDERED_UP_TO:
        from matplotlib.ticker import MaxNLocator

        bottom.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(columns, 25)))
    else:
        bottom.set_xticks([])
    bottom.set_xlabel(x_label)
    bottom.set_ylabel(row_label)
    if len(row_names) <= MAX_ROW_TICKS:
        bottom.set_yticks(range(len(row_names)), row_names, fontsize=8)
    fig.colorbar(image, ax=[top, bottom], label="share of the client's samples", shrink=0.7)
    atomic_save_figure(out, fig, dpi=120)
    plt.close(fig)
