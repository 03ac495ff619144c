"""Paper-ready output (issue 26): n counts distinct runs, --sweep takes exactly the grid, figures
read back from their files (fonts, legend on the canvas, bands in range), LaTeX tables."""

import json
import math
import shutil
import subprocess

import matplotlib
import numpy as np
import pytest
from conftest import write_run
from scipy import stats

from flcli.plot import Layout, plan_figure, plot_runs, render
from flcli.report import summarize, to_latex
from flcli.runs import find_runs, group_runs, merge_copies

matplotlib.use("Agg")

LONG = "a rather long description of this variant that a paper would never print in full"


def test_a_copy_of_a_run_counts_once_and_says_so(tmp_path):
    write_run(tmp_path / "s0", [0.1, 0.5, 0.7], seed=0)
    write_run(tmp_path / "s1", [0.1, 0.6, 0.9], seed=1)
    shutil.copytree(tmp_path / "s0", tmp_path / "copy-of-s0")
    runs, notes = merge_copies(find_runs([tmp_path]))
    (group,) = group_runs(runs)
    assert group.n == 2
    assert len(notes) == 1 and "copy-of-s0" in notes[0] and "counted once" in notes[0]
    report = summarize(group_runs(runs), "test_accuracy")
    assert report.rows[0]["seeds"] == 2
    assert report.rows[0]["final_std"] == pytest.approx(np.std([0.7, 0.9], ddof=1))


def test_sweep_flag_takes_the_current_grid_and_prune_removes_the_rest(tmp_path, cli):
    sweep_file = tmp_path / "s.toml"
    body = 'name = "s"\n[base]\ndataset = "digits"\nclients = 4\nrounds = 1\n[grid]\n'
    sweep_file.write_text(body + "seed = [0, 1, 2]\n")
    out = tmp_path / "out"
    assert cli("sweep", sweep_file, "--jobs", "1", "--out", out).code == 0
    sweep_file.write_text(body + "seed = [0, 1]\n")  # the grid shrinks: seed 2 is orphaned
    report = cli("report", "--sweep", sweep_file, "--format", "csv")
    assert report.code != 0  # --sweep reads the file's default results dir, not --out
    moved = tmp_path / "results" / "s"
    moved.parent.mkdir()
    shutil.move(out, moved)
    import os

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        report = cli("report", "--sweep", sweep_file, "--format", "csv")
        assert report.code == 0, report.err
        assert report.out.splitlines()[1].split(",")[2] == "2"  # seeds
        every = cli("report", "results/s", "--format", "csv")
        assert every.out.splitlines()[1].split(",")[2] == "3"
        listed = cli("sweep", sweep_file, "--prune")
        assert "seed=2" in listed.out and (moved / "seed=2").is_dir()
        assert cli("sweep", sweep_file, "--prune", "--yes").code == 0
        assert not (moved / "seed=2").exists() and (moved / "seed=1").is_dir()
    finally:
        os.chdir(here)


def six_long_labels(root):
    for i, mu in enumerate((0.001, 0.01, 0.1, 1.0, 10.0, 100.0)):
        write_run(root / f"p{mu}", [0.1, 0.3 + 0.05 * i, 0.5], algo="fedprox", algo_args={"mu": mu})
    return {f"μ={mu:g}": f"{LONG} {mu}" for mu in (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)}


@pytest.mark.parametrize("where", ["below", "right"])
def test_six_long_labels_keep_the_legend_on_the_canvas(tmp_path, where):
    labels = six_long_labels(tmp_path / "runs")
    figure = plan_figure(find_runs([tmp_path / "runs"]), layout=Layout(labels, legend=where))
    drawn = render(figure)
    out = tmp_path / f"legend-{where}.png"
    drawn.savefig(out, dpi=100)
    renderer = drawn.canvas.get_renderer()
    (legend,) = drawn.legends
    box, canvas = legend.get_window_extent(renderer), drawn.bbox
    assert canvas.x0 <= box.x0 and box.x1 <= canvas.x1 and canvas.y0 <= box.y0
    assert any(LONG[:20] in t.get_text() for t in legend.get_texts())
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (int(canvas.height), int(canvas.width))  # the file is the canvas
    shutil.copy(out, f"/tmp/figs/test-legend-{where}.png")


def test_pdf_embeds_truetype_fonts_and_svg_keeps_text(tmp_path):
    write_run(tmp_path / "runs" / "a", [0.1, 0.5, 0.7])
    runs = find_runs([tmp_path / "runs"])
    plot_runs(runs, tmp_path / "f.pdf")
    plot_runs(runs, tmp_path / "f.svg")
    pdf = (tmp_path / "f.pdf").read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf
    assert "<text" in (tmp_path / "f.svg").read_text()


def test_bands_stay_in_the_metric_range(tmp_path):
    write_run(tmp_path / "a", [0.0, 0.0, 0.01], seed=0)
    write_run(tmp_path / "b", [0.0, 0.6, 0.9], seed=1)
    drawn = render(plan_figure(find_runs([tmp_path])))
    (band,) = drawn.axes[0].collections
    ys = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
    assert ys.min() >= 0.0 and ys.max() <= 1.0


def test_curves_that_coincide_get_a_note_and_markers(tmp_path):
    write_run(tmp_path / "avg", [0.1, 0.5, 0.7])
    write_run(tmp_path / "prox", [0.1, 0.5, 0.7001], algo="fedprox", algo_args={"mu": 0.01})
    figure = plan_figure(find_runs([tmp_path]))
    (note,) = [n for n in figure.notes if "coincide" in n]
    assert "'FedAvg' and 'FedProx' coincide" in note  # μ follows the algorithm: not in labels
    looks = list(figure.styles.values())
    assert looks[0].marker is None and looks[1].marker is None  # the line keeps its style
    assert figure.look(None, "fedprox").marker is not None  # the panel's marker


def test_markers_for_coinciding_curves_stay_in_their_panel(tmp_path):
    for alpha, prox in ((0.1, [0.1, 0.5, 0.7001]), (1.0, [0.1, 0.3, 0.4])):
        write_run(tmp_path / f"avg{alpha}", [0.1, 0.5, 0.7], scheme="dirichlet", alpha=alpha)
        write_run(tmp_path / f"prox{alpha}", prox, algo="fedprox", scheme="dirichlet", alpha=alpha)
    figure = plan_figure(find_runs([tmp_path]), facet="partition")
    (note,) = [n for n in figure.notes if "coincide" in n]
    assert "in panel dirichlet(α=0.1)" in note
    assert figure.look("dirichlet(α=0.1)", "fedprox").marker is not None
    assert figure.look("dirichlet(α=1)", "fedprox").marker is None
    drawn = render(figure)
    unmarked = (None, "None", "")
    marked = [[line.get_marker() not in unmarked for line in ax.lines] for ax in drawn.axes]
    assert sorted(map(sum, marked)) == [0, 1]  # one line with markers, in one panel
    (legend,) = drawn.legends
    assert all(h.get_marker() in unmarked for h in legend.legend_handles)


def test_final_metric_against_a_setting_with_error_bars(tmp_path):
    for eps, level in ((1.0, 0.5), (10.0, 0.8)):
        for seed in (0, 1):
            write_run(
                tmp_path / f"e{eps}-{seed}",
                [0.1, level - 0.1, level + 0.02 * seed],
                seed=seed,
                extra={"epsilon": [0, eps / 2, eps]},
            )
            info_file = tmp_path / f"e{eps}-{seed}" / "run.json"
            info = json.loads(info_file.read_text())
            info["config"]["dp_epsilon"] = eps
            info_file.write_text(json.dumps(info))
    out = tmp_path / "eps.png"
    summary = plot_runs(find_runs([tmp_path]), out, x="dp_epsilon")
    assert out.is_file() and summary.groups == 1
    figure = plan_figure(find_runs([tmp_path]), x="dp_epsilon", final="last-k:2")
    drawn = render(figure)
    ax = drawn.axes[0]
    line = ax.containers[0][0]  # the errorbar's data line
    assert list(line.get_xdata()) == [1.0, 10.0]
    expected = [np.mean([0.4, 0.5, 0.4, 0.52]), np.mean([0.7, 0.8, 0.7, 0.82])]
    assert np.allclose(line.get_ydata(), expected)
    assert ax.get_xlabel() == "Privacy budget ε"
    assert "DP ε" not in figure.title  # ε varies: it is on the axis, not in the title


def pivot_runs(root):
    for algo, base in (("fedavg", 0.8), ("fedprox", 0.85)):
        for scheme, alpha, drop in (("iid", None, 0.0), ("dirichlet", 0.1, 0.2)):
            for seed in range(3):
                final = base - drop + 0.01 * seed + (0.005 * seed if algo == "fedprox" else 0)
                write_run(
                    root / f"{algo}-{scheme}-{seed}",
                    [0.1, final - 0.1, final],
                    algo=algo,
                    scheme=scheme,
                    alpha=alpha,
                    seed=seed,
                )
    return find_runs([root])


def test_pivot_ci_and_paired_test(tmp_path):
    runs = pivot_runs(tmp_path)
    report = summarize(
        group_runs(runs, ["algo", "partition"]), "test_accuracy", final="last", ci=95,
        pivot=("algo", "partition"), compare=("fedavg, iid", "fedprox, iid"),
    )  # fmt: skip
    fedavg_iid = [0.8, 0.81, 0.82]
    half = stats.t.ppf(0.975, 2) * np.std(fedavg_iid, ddof=1) / math.sqrt(3)
    row = next(r for r in report.rows if r["algo"] == "fedavg" and r["partition"] == "iid")
    assert row["final_ci"] == pytest.approx(half)
    fedprox_iid = [0.85, 0.865, 0.88]
    expected = stats.ttest_rel(fedavg_iid, fedprox_iid)
    assert report.comparisons[0]["p"] == pytest.approx(expected.pvalue)
    assert report.comparisons[0]["pairs"] == 3 and "paired t-test" in report.comparisons[0]["test"]
    latex = to_latex(report)
    assert r"\toprule" in latex and r"\bottomrule" in latex
    lines = [line for line in latex.splitlines() if line.endswith(r"\\")]
    assert lines[0].startswith("algorithm & iid & dirichlet($\\alpha$=0.1)")
    fedprox_line = next(line for line in lines if line.startswith("FedProx"))
    assert fedprox_line.count(r"\textbf") == 2  # best in both columns
    assert r"\textbf" not in next(line for line in lines if line.startswith("FedAvg"))


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_the_latex_pivot_compiles(tmp_path, cli):
    pivot_runs(tmp_path / "runs")
    table = tmp_path / "table.tex"
    result = cli(
        "report", tmp_path / "runs", "--pivot", "algo", "partition", "--format", "latex",
        "--ci", "95", "--out", table,
    )  # fmt: skip
    assert result.code == 0, result.err
    document = tmp_path / "paper.tex"
    document.write_text(
        "\\documentclass{article}\n\\usepackage[utf8]{inputenc}\n\\usepackage{booktabs}\n"
        "\\begin{document}\n\\begin{table}\\centering\n\\input{table.tex}\n"
        "\\caption{Final accuracy.}\\end{table}\n\\end{document}\n"
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "paper.pdf").stat().st_size > 0


def test_compare_on_several_partitions_tests_within_each_and_the_pivot_caption_is_its_cells(
    tmp_path, cli
):
    from flcli.report import caption

    runs = pivot_runs(tmp_path)
    report = summarize(
        group_runs(runs, ["algo", "partition"]), "test_accuracy",
        pivot=("algo", "partition"), compare=("fedavg", "fedprox"),
    )  # fmt: skip
    within = [result["within"] for result in report.comparisons]
    assert within == ["iid", "dirichlet(α=0.1)"]
    dirichlet = report.comparisons[1]
    expected = stats.ttest_rel([0.6, 0.61, 0.62], [0.65, 0.665, 0.68])
    assert dirichlet["p"] == pytest.approx(expected.pvalue) and dirichlet["pairs"] == 3
    text = caption(report)
    assert "within iid: fedavg, iid vs fedprox, iid" in text
    assert "best =" not in text and "p10" not in text
    keys = ("--group-by", "algo,partition")
    result = cli("report", tmp_path, "--compare", "fedavg", "fedprox", *keys)
    assert result.code == 0, result.err
    lines = [line for line in result.err.splitlines() if line.startswith("within ")]
    assert len(lines) == 2
