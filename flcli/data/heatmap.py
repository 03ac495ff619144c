"""partition.png: client sizes above a labels x clients heatmap, to see skew at a glance."""

from pathlib import Path

import numpy as np

from flcli.fileio import atomic_save_figure


def draw_heatmap(partition, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(partition.meta["label_counts"]).T  # [classes, clients]
    sizes = counts.sum(axis=0)
    clients = np.arange(counts.shape[1])
    meta = partition.meta
    params = ", ".join(f"{k}={v}" for k, v in meta["params"].items() if k != "test_size")
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(min(4 + 0.25 * len(clients), 16), 5.5),
        sharex=True,
        gridspec_kw={"height_ratios": [1, 3]},
        constrained_layout=True,
    )
    top.bar(clients, sizes, width=0.9, color="#4c72b0")
    top.set_ylabel("samples")
    top.set_title(f"{meta['dataset']} · {meta['scheme']} ({params}) · {len(clients)} clients")
    image = bottom.imshow(
        counts,
        aspect="auto",
        cmap="viridis",
        interpolation="nearest",
        extent=(-0.5, len(clients) - 0.5, counts.shape[0] - 0.5, -0.5),
    )
    from matplotlib.ticker import MaxNLocator

    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_xlabel("client")
    bottom.set_ylabel("label")
    if counts.shape[0] <= 20:
        bottom.set_yticks(range(counts.shape[0]))
    fig.colorbar(image, ax=[top, bottom], label="samples of the label", shrink=0.8)
    atomic_save_figure(out, fig, dpi=120)
    plt.close(fig)
