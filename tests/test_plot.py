"""fl plot's figure: panels, groups, stable colours, bands, legend placement, errors."""

import json

import matplotlib
import pytest
from conftest import write_run

from flcli.algorithms.registry import ALGORITHMS
from flcli.errors import FLError
from flcli.plot import ALGORITHM_COLORS, algorithm_color, plan_figure, plot_runs, render
from flcli.runs import find_runs, group_runs

matplotlib.use("Agg")


def sweep(root, algos=("fedavg", "fedprox", "scaffold"), seeds=3, **options):
    for algo in algos:
        for scheme, alpha in (("iid", None), ("dirichlet", 0.1)):
            for seed in range(seeds):
                accuracy = [0.1, 0.4 + 0.05 * seed, 0.6 + 0.02 * seed, 0.7]
                write_run(
                    root / f"{algo}-{scheme}-{seed}",
                    accuracy,
                    algo=algo,
                    scheme=scheme,
                    alpha=alpha,
                    seed=seed,
                    **options,
                )
    return find_runs([root])


def test_colours_are_fixed_per_algorithm_whatever_else_is_plotted(tmp_path):
    runs = sweep(tmp_path / "all")
    every = plan_figure(runs, facet="partition").styles
    some = plan_figure([r for r in runs if r.settings["algo"] != "fedavg"], facet="partition")
    # (the fake runs' curves coincide, so some get markers: colour and line style are fixed)
    assert every["fedprox"][:2] == some.styles["fedprox"][:2] == (ALGORITHM_COLORS["fedprox"], "-")
    assert every["fedavg"][0] == ALGORITHM_COLORS["fedavg"]
    assert algorithm_color("fedmagic") == algorithm_color("fedmagic")


def test_every_registered_algorithm_has_a_colour_of_its_own():
    colours = [algorithm_color(name) for name in ALGORITHMS]
    assert len(set(colours)) == len(colours)
    unregistered = {algorithm_color(f"fedmagic{i}") for i in range(100)}
    assert unregistered.isdisjoint(colours)


def test_variants_of_one_algorithm_share_its_colour_and_differ_in_line_style(tmp_path):
    runs = sweep(tmp_path, algos=("fedavg", "fedprox"))
    styles = plan_figure(runs, group_by=["algo", "partition"]).styles
    assert styles["fedavg, iid"][0] == styles["fedavg, dirichlet(α=0.1)"][0]
    assert styles["fedavg, iid"][1] != styles["fedavg, dirichlet(α=0.1)"][1]
    assert styles["fedprox, iid"][0] != styles["fedavg, iid"][0]


def test_many_variants_of_one_algorithm_are_all_drawn_differently(tmp_path):
    mus = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
    for mu in mus:
        write_run(tmp_path / f"p{mu}", [0.1, 0.5, 0.7], algo="fedprox", algo_args={"mu": mu})
    write_run(tmp_path / "fedavg", [0.1, 0.4, 0.6])
    figure = plan_figure(find_runs([tmp_path]))
    assert len(figure.styles) == len(mus) + 1
    assert len(set(figure.styles.values())) == len(mus) + 1
    drawn = render(figure)
    (ax,) = drawn.axes
    looks = {(line.get_color(), line.get_linestyle(), line.get_marker()) for line in ax.lines}
    assert len(looks) == len(mus) + 1


def test_a_group_of_unset_settings_says_so_in_the_legend(tmp_path):
    fedavg_run = write_run(tmp_path / "fedavg", [0.1, 0.4, 0.6]) / "run.json"
    info = json.loads(fedavg_run.read_text())
    info["config"]["mu"] = None  # as fl train writes it for an algorithm without mu
    fedavg_run.write_text(json.dumps(info))
    for mu in (0.01, 0.1):
        write_run(tmp_path / f"p{mu}", [0.1, 0.5, 0.7], algo="fedprox", algo_args={"mu": mu})
    figure = plan_figure(find_runs([tmp_path]), facet="algo")
    (fedavg,) = figure.panels[0][1]
    assert fedavg.values == {"mu": None}
    assert list(figure.legend.values()) == ["μ not set", "μ=0.01", "μ=0.1"]
    legend_texts = [text.get_text() for text in render(figure).legends[0].get_texts()]
    assert legend_texts == ["μ not set", "μ=0.01", "μ=0.1"]


def test_one_panel_per_facet_value_with_the_groups_in_each(tmp_path):
    figure = plan_figure(sweep(tmp_path), facet="partition")
    assert [value for value, _ in figure.panels] == ["iid", "dirichlet(α=0.1)"]
    for _, groups in figure.panels:
        assert [g.label for g in groups] == ["fedavg", "fedprox", "scaffold"]
        assert all(len(g.runs) == 3 for g in groups)
    assert "digits" in figure.title and "10 clients" in figure.title
    assert "mean ± 1 std over n = 3 seeds" in figure.title


def test_the_title_says_the_partition_when_all_runs_share_it(tmp_path):
    runs = [r for r in sweep(tmp_path) if r.settings["scheme"] == "dirichlet"]
    title = plan_figure(runs).title
    assert title.startswith("digits · 10 clients · dirichlet(α=0.1) · softmax model")


def test_legend_is_outside_the_panels_and_bands_are_drawn(tmp_path):
    runs = sweep(tmp_path)
    write_run(tmp_path / "going", [0.1, 0.3], algo="scaffold", seed=9, rounds=3, status="running")
    figure = plan_figure(find_runs([tmp_path]), facet="partition")
    drawn = render(figure)
    drawn.canvas.draw()
    renderer = drawn.canvas.get_renderer()
    (legend,) = drawn.legends
    box = legend.get_window_extent(renderer)
    axes = [ax for ax in drawn.axes if ax.get_visible()]
    assert len(axes) == 2
    for ax in axes:
        assert box.y1 <= ax.get_tightbbox(renderer).y0  # below the panels and their labels
        assert len(ax.collections) == 3  # one ±1 std band per group
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels == ["FedAvg (n=3)", "FedProx (n=3)", "SCAFFOLD (1 running; n=3–4)"]
    assert len(runs) == 18


def test_wrapped_panels_keep_an_x_axis_under_every_column(tmp_path):
    for lr in (0.1, 0.2, 0.3, 0.4):
        write_run(tmp_path / f"lr{lr}", [0.1, 0.5, 0.6], lr=lr)
    drawn = render(plan_figure(find_runs([tmp_path]), facet="lr"))
    visible = [ax for ax in drawn.axes if ax.get_visible()]
    assert len(visible) == 4 and len(drawn.axes) == 6
    assert sum(bool(ax.get_xlabel()) for ax in visible) == 3


@pytest.mark.parametrize(
    "suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")]
)
def test_the_format_follows_the_extension(tmp_path, suffix, magic):
    runs = find_runs([write_run(tmp_path / "r", [0.1, 0.5, 0.7])])
    out = tmp_path / f"figure{suffix}"
    summary = plot_runs(runs, out, metric="test_accuracy", smooth=2, logy=True, x="bytes")
    assert out.read_bytes().startswith(magic)
    assert (summary.runs, summary.groups, summary.panels) == (1, 1, 1)


def test_runs_without_rounds_are_skipped_with_a_note(tmp_path):
    write_run(tmp_path / "done", [0.1, 0.5])
    write_run(tmp_path / "new", [0.1], status="running", with_rounds=False)
    figure = plan_figure(find_runs([tmp_path]))
    assert len(figure.notes) == 1 and "new: no rounds.csv yet (status running)" in figure.notes[0]
    only_new = find_runs([tmp_path / "new"])
    with pytest.raises(FLError, match="none of the 1 runs found has a rounds.csv"):
        plan_figure(only_new)


def test_pooling_different_settings_is_noted(tmp_path):
    figure = plan_figure(sweep(tmp_path, algos=("fedavg",)), group_by=["algo"])
    assert "pools runs that differ in partition" in figure.notes[0]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"metric": "test_f1"}, r"rounds\.csv has no column 'test_f1'"),
        ({"x": "epochs"}, "--x 'epochs' is not one of: round, bytes, time"),
        ({"smooth": 0}, "--smooth 0"),
        ({"facet": "colour"}, "--facet 'colour' is not a setting"),
        ({"group_by": ["colour"]}, "--group-by 'colour' is not a setting"),
    ],
)
def test_bad_plot_options_are_errors_that_say_the_fix(tmp_path, options, message):
    runs = find_runs([write_run(tmp_path / "r", [0.1, 0.5])])
    with pytest.raises(FLError, match=message):
        plan_figure(runs, **options)


def test_a_figure_needs_a_known_extension(tmp_path):
    runs = find_runs([write_run(tmp_path / "r", [0.1, 0.5])])
    with pytest.raises(FLError, match=r"\.png, \.svg, \.pdf"):
        plot_runs(runs, tmp_path / "figure.jpg")
    assert group_runs(runs)[0].label == "all runs"


def test_the_dense_baseline_of_a_compression_study_is_named_so_and_logx_draws(tmp_path, cli):
    from flcli.plot import unset

    assert unset(["compress", "error_feedback"]) == "no compression"
    assert unset(["dp_clip", "dp_noise"]) == "no DP"
    runs = [write_run(tmp_path / f"r{i}", [0.1, 0.5, 0.8], seed=i) for i in range(2)]
    done = cli("plot", *runs, "--x", "bytes", "--logx", "--out", tmp_path / "a.png")
    assert done.code == 0, done.err
    assert (tmp_path / "a.png").stat().st_size > 0
