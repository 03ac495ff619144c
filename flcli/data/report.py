"""The partition report printed by `fl partition` and `fl inspect`: built from partition.json alone.

A summary row, then one row per client (up to MAX_CLIENT_ROWS clients) or, for more clients,
percentiles over clients, so that 1,000 clients read as easily as 10.
"""

import numpy as np
from rich.console import Group
from rich.table import Table

from flcli.data.sample_format import PAD, PAD_ID, UNKNOWN, UNKNOWN_ID
from flcli.data.stats import js_divergences

MAX_CLIENT_ROWS = 20
BARS = " ▁▂▃▄▅▆▇█"
PERCENTILES = (0, 10, 50, 90, 100)


def params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def label_bar(counts: np.ndarray) -> str:
    """One character per class, its height the class's share of the client's samples."""
    share = counts / max(int(counts.sum()), 1)
    levels = np.ceil(share / share.max() * (len(BARS) - 1)).astype(int) if share.max() else share
    return "".join(BARS[int(level)] if level else "·" for level in levels)


def summary_table(meta: dict) -> Table:
    """The partition's figures, one per line."""
    sizes = np.asarray(meta["client_sizes"])
    skew = meta.get("heterogeneity") or {"size_cv": float(sizes.std() / sizes.mean())}
    table = Table(
        title=f"{meta['dataset']} · {meta['scheme']} ({params_text(meta['params'])})",
        box=None,
        title_justify="left",
        show_header=False,
    )
    table.add_column(style="bold")
    table.add_column()
    vertical = meta.get("vertical")
    clients = f"{vertical['num_clients']} (vertical)" if vertical else meta["num_clients"]
    table.add_row("clients", f"{clients}  (seed {meta.get('seed', '-')})")
    train, test = meta.get("num_train", sizes.sum()), meta.get("num_test", "-")
    table.add_row("train / test samples", f"{train} / {test}")
    for name, text in sample_rows(meta):
        table.add_row(name, text)
    table.add_row(
        "client size min / median / max",
        f"{sizes.min()} / {np.median(sizes):g} / {sizes.max()}   (CV {skew['size_cv']:.2f})",
    )
    params = meta.get("params") or {}
    if "min_samples" in params:
        lowered = params.get("min_samples_default")
        why = (
            f"   (lowered from the default {lowered}: the largest minimum any draw of this seed "
            "reached)"
            if lowered is not None
            else ""
        )
        table.add_row("min samples per client", f"{params['min_samples']}{why}")
    if "label_counts" in meta:
        labels = (np.asarray(meta["label_counts"]) > 0).sum(axis=1)
        table.add_row(
            "labels per client min / mean / max",
            f"{labels.min()} / {labels.mean():.1f} / {labels.max()}   (of {meta['num_classes']})",
        )
        table.add_row("JS divergence to global labels", f"{skew['js_divergence']:.3f}  (0 = IID)")
    elif "target_shift" in skew:
        table.add_row("target shift", f"{skew['target_shift']:.2f}  (std of client means / std)")
    return table


def sample_rows(meta: dict) -> list[tuple[str, str]]:
    """The shape of a sample (C x H x W, T) and a token sequence's vocabulary, when recorded."""
    rows = []
    features = meta.get("num_features")
    if "input_shape" in meta:
        shape = " x ".join(str(size) for size in meta["input_shape"])
        rows.append(("input shape", f"{shape}   ({features} features)" if features else shape))
    elif features is not None:
        rows.append(("input shape", f"{features} features"))
    if "vocabulary" in meta:
        size = len(meta["vocabulary"])
        rows.append(
            ("vocabulary", f"{size} tokens   (id {PAD_ID}: {PAD}, id {UNKNOWN_ID}: {UNKNOWN})")
        )
    return rows


def client_table(meta: dict) -> Table:
    """One row per client: size, labels held, the label mix and its two largest labels."""
    counts = np.asarray(meta["label_counts"])
    table = Table(box=None, title="clients", title_justify="left")
    for name in ("client", "samples", "labels", "label mix (one bar per class)", "top labels"):
        table.add_column(name, justify="left" if name.startswith(("label mix", "top")) else "right")
    show_bars = counts.shape[1] <= 40
    names = meta.get("client_names") or [str(c) for c in range(len(counts))]
    for client, row in enumerate(counts):
        top = np.argsort(-row, kind="stable")[:2]
        top_text = ", ".join(
            f"{class_name(meta, c)}: {row[c] / row.sum():.0%}" for c in top if row[c]
        )
        table.add_row(
            names[client],
            str(row.sum()),
            str((row > 0).sum()),
            label_bar(row) if show_bars else "-",
            top_text,
        )
    return table


def class_name(meta: dict, c: int) -> str:
    classes = meta.get("classes")
    return str(classes[c]) if classes else str(c)


def percentile_table(meta: dict) -> Table:
    """Percentiles over clients of size, labels held, the top label's share and JS divergence."""
    sizes = np.asarray(meta["client_sizes"])
    table = Table(box=None, title="over clients", title_justify="left")
    table.add_column("percentile", justify="right")
    columns = {"samples": (sizes, "{:.0f}")}
    if "label_counts" in meta:
        counts = np.asarray(meta["label_counts"])
        totals = np.maximum(counts.sum(axis=1), 1)
        columns["labels"] = ((counts > 0).sum(axis=1), "{:.0f}")
        columns["top label share"] = (counts.max(axis=1) / totals, "{:.0%}")
        columns["JS divergence"] = (js_divergences(counts), "{:.3f}")
    for name in columns:
        table.add_column(name, justify="right")
    for q in PERCENTILES:
        cells = [
            fmt.format(np.percentile(values, q, method="nearest"))
            for values, fmt in columns.values()
        ]
        table.add_row(f"p{q}", *cells)
    return table


def vertical_table(meta: dict) -> Table:
    """A vertical partition's clients: the feature columns each holds (all rows each)."""
    table = Table(
        box=None, title="clients (vertical: every row, some columns)", title_justify="left"
    )
    for name in ("client", "columns", "feature columns"):
        table.add_column(name, justify="left" if name == "feature columns" else "right")
    for client, names in enumerate(meta["vertical"]["feature_columns"]):
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        table.add_row(str(client), str(len(names)), shown)
    return table


def partition_report(meta: dict) -> Group:
    """Everything `fl inspect` prints, as one rich renderable."""
    parts = [summary_table(meta)]
    if "vertical" in meta:
        return Group(*parts, vertical_table(meta))
    if "label_counts" in meta and meta["num_clients"] <= MAX_CLIENT_ROWS:
        parts.append(client_table(meta))
    else:
        parts.append(percentile_table(meta))
    return Group(*parts)
