import numpy as np
from rich.console import Console

from flcli.data import stats
from flcli.data.build import build_partition
from flcli.data.config import PartitionConfig
from flcli.data.heatmap import MAX_COLUMNS, column_order, draw_heatmap, value_counts
from flcli.data.holdout import with_client_test
from flcli.data.report import label_bar, partition_report


def render(renderable) -> str:
    console = Console(width=100, record=True)
    console.print(renderable)
    return console.export_text()


def test_thousand_clients_report_and_figure(tmp_path):
    part = build_partition(
        PartitionConfig(
            dataset="classification:n_samples=12000,n_classes=10,n_features=5",
            clients=1000,
            scheme="shards",
            min_samples=5,
            seed=0,
        )
    )
    text = render(partition_report(part.meta))
    assert "over clients" in text and "p50" in text and "label mix" not in text
    assert max(len(line) for line in text.splitlines()) <= 100
    draw_heatmap(part, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 20_000


def test_few_clients_get_one_row_each():
    part = build_partition(
        PartitionConfig(dataset="iris", clients=3, scheme="pathological", classes_per_client=1)
    )
    text = render(partition_report(part.meta))
    assert "label mix" in text
    assert text.count("100%") == 3  # one label per client


def test_regression_report_and_figure(tmp_path):
    part = build_partition(
        PartitionConfig(dataset="diabetes", clients=5, scheme="continuous", by="bmi")
    )
    assert "target shift" in render(partition_report(part.meta))
    draw_heatmap(part, tmp_path / "p.png")
    assert (tmp_path / "p.png").is_file()


def test_many_clients_are_sorted_by_their_largest_label_and_sampled():
    counts = np.zeros((5000, 4), dtype=int)
    counts[np.arange(5000), np.arange(5000) % 4] = 10
    order, label = column_order(counts)
    assert len(order) == MAX_COLUMNS and "of 5000" in label
    largest = counts[order].argmax(axis=1)
    assert np.all(np.diff(largest) >= 0)


def test_label_bar_marks_empty_classes():
    assert label_bar(np.array([10, 0, 5])) == "█·▄"


def test_inspect_reads_a_partition_written_by_other_tools(regression_dir):
    from flcli.data.store import read_meta

    text = render(partition_report(read_meta(regression_dir)))
    assert "make_regression" in text and "CV" in text


def test_regression_rows_hold_the_targets_their_names_say(tmp_path):
    """Row "<= e" holds the targets in (previous edge, e]; whole-number targets sit on edges."""
    x = np.random.default_rng(0).normal(size=(200, 2))
    score = np.repeat([1.0, 2.0, 3.0], [50, 100, 50])
    table = tmp_path / "scores.csv"
    rows = [f"{a},{b},{s}" for (a, b), s in zip(x, score, strict=True)]
    table.write_text("\n".join(["a,b,score", *rows]) + "\n")
    part = build_partition(
        PartitionConfig(dataset=str(table), target="score", clients=4, scheme="iid", seed=0)
    )
    counts, names, _ = value_counts(part)
    y = part.y_train
    assert names == ["≤ 1", "≤ 2", "≤ 3", "> 3"]
    expected = [(y == 1).sum(), (y == 2).sum(), (y == 3).sum(), 0]
    assert counts.sum(axis=0).tolist() == expected


def test_client_test_split_refreshes_the_regression_skew_figures():
    part = build_partition(
        PartitionConfig(dataset="diabetes", clients=6, scheme="quantity", sizes="exponential")
    )
    held = with_client_test(part, 0.5, seed=0)
    figures = stats.target_heterogeneity(held.y_train, held.offsets)
    assert held.meta["heterogeneity"] == figures
    assert figures != part.meta["heterogeneity"]
