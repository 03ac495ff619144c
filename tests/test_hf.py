"""hf:NAME[@REVISION][:SPLIT] through the datasets library, on folders the tests write."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from conftest import assert_one_line_error

from flcli.data.hub import resolve_revision
from flcli.errors import FLError

datasets = pytest.importorskip("datasets")

WRITERS = {"w0": 12, "w1": 9, "w2": 15}


def tiny(seed=0, rows=None):
    """An image-like list column, a number, a writer_id and a label."""
    generator = np.random.default_rng(seed)
    writers = [w for w, n in WRITERS.items() for _ in range(n)] if rows is None else rows
    n = len(writers)
    labels = generator.integers(0, 3, n)
    images = generator.random((n, 4, 4)) + labels[:, None, None]
    return datasets.Dataset.from_dict(
        {
            "image": images.tolist(),
            "size": generator.random(n).tolist(),
            "writer_id": writers,
            "label": labels.tolist(),
        }
    ).cast_column("label", datasets.ClassLabel(names=["a", "b", "c"]))


def test_a_saved_folder_through_partition_and_train(cli, tmp_path):
    folder = tmp_path / "femnist-like"
    tiny().save_to_disk(str(folder))
    part, run = tmp_path / "p", tmp_path / "r"
    result = cli(
        "partition", f"hf:{folder}", "--scheme", "natural", "--by", "writer_id", "--out", part
    )
    assert result.code == 0, result.err
    meta = json.loads((part / "partition.json").read_text())
    assert meta["num_features"] == 17  # 4 x 4 image flattened, and size
    assert sorted(meta["client_names"]) == sorted(WRITERS)
    assert meta["num_train"] + meta["num_test"] == sum(WRITERS.values())
    assert meta["classes"] == ["a", "b", "c"]
    source = meta["dataset_source"]
    assert source["loader"] == "datasets" and source["revision"] == "local"
    assert "revision_requested" not in source  # a folder has no revisions to ask for
    assert len(source["fingerprint"]) >= 8
    assert cli("train", part, "--rounds", "2", "--out", run).code == 0


def test_a_dataset_dict_gives_its_test_split(cli, tmp_path):
    folder = tmp_path / "dd"
    train = tiny(0)
    test = tiny(1, rows=["w0"] * 7)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(folder))
    part = tmp_path / "p"
    result = cli(
        "partition", f"hf:{folder}", "--scheme", "natural", "--by", "writer_id", "--out", part
    )
    assert result.code == 0, result.err
    meta = json.loads((part / "partition.json").read_text())
    assert meta["num_test"] == 7 and meta["params"]["test_split"] == "own"
    assert sorted(meta["client_sizes"]) == sorted(WRITERS.values())
    one = cli(
        "partition",
        f"hf:{folder}:test",
        "--drop",
        "writer_id",
        "--clients",
        "2",
        "--out",
        tmp_path / "q",
    )
    assert one.code == 0, one.err


def test_text_needs_encode(cli, tmp_path):
    folder = tmp_path / "text"
    data = tiny().add_column("word", ["x", "y", "z"] * 12)
    data.save_to_disk(str(folder))
    natural = ["--scheme", "natural", "--by", "writer_id"]
    refused = cli("partition", f"hf:{folder}", *natural, "--out", tmp_path / "p")
    assert_one_line_error(refused, "'word'", "--encode")
    done = cli("partition", f"hf:{folder}", *natural, "--encode", "--out", tmp_path / "q")
    assert done.code == 0, done.err


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda d: (d / "state.json").write_text("garbage"), "cannot read"),
        (lambda d: next(d.glob("*.arrow")).write_bytes(b"xx"), "cannot read"),
        (lambda d: None, "does not exist"),
    ],
)
def test_a_broken_or_absent_folder_is_one_line(cli, tmp_path, damage, fragment):
    folder = tmp_path / "d"
    tiny().save_to_disk(str(folder))
    damage(folder)
    name = folder if fragment != "does not exist" else tmp_path / "absent"
    result = cli("partition", f"hf:{name}", "--scheme", "natural", "--out", tmp_path / "p")
    assert_one_line_error(result, fragment)


def test_a_bad_spec_and_a_missing_split_are_one_line(cli, tmp_path):
    folder = tmp_path / "d"
    tiny().save_to_disk(str(folder))
    result = cli("partition", f"hf:{folder}:valid", "--out", tmp_path / "p")
    assert_one_line_error(result, "no splits", ":valid")
    assert_one_line_error(cli("partition", "hf:", "--out", tmp_path / "q"), "hf:NAME")


def test_without_the_extra_it_says_what_to_install(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)
    result = cli("partition", f"hf:{tmp_path}", "--scheme", "natural", "--out", tmp_path / "p")
    assert_one_line_error(result, "pip install 'flcli[hf]'")


SHAS = {"main": "1" * 40, "v1": "2" * 40}  # the fake hub's commit of each revision of flcli/tiny


class FakeHub(BaseHTTPRequestHandler):
    """The hub's dataset-info route, /api/datasets/OWNER/NAME/revision/REVISION, for flcli/tiny;
    flcli/broken answers 500."""

    asked: list[str] = []

    def do_GET(self):
        self.asked.append(self.path)
        prefix = "/api/datasets/flcli/tiny/revision/"
        revision = self.path.split("?")[0].removeprefix(prefix)
        if self.path.startswith("/api/datasets/flcli/broken"):
            self.answer(500, {"error": "down"})
        elif not self.path.startswith(prefix):
            self.answer(404, {"error": "no repo"}, code="RepoNotFound")
        elif revision not in SHAS:
            self.answer(404, {"error": "no revision"}, code="RevisionNotFound")
        else:
            self.answer(200, {"id": "flcli/tiny", "sha": SHAS[revision], "private": False})

    def answer(self, status, body, code=None):
        content = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        if code:
            self.send_header("X-Error-Code", code)
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub():
    FakeHub.asked = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("requested, asked", [(None, "main"), ("main", "main"), ("v1", "v1")])
def test_the_hub_resolves_the_revision_to_its_commit(hub, requested, asked):
    record = resolve_revision("flcli/tiny", requested, offline=False, endpoint=hub)
    assert record == {"revision_requested": asked, "revision": SHAS[asked]}
    assert FakeHub.asked == [f"/api/datasets/flcli/tiny/revision/{asked}"]


@pytest.mark.parametrize(
    "name, requested, fragments",
    [
        ("flcli/tiny", "v9", ["hf:flcli/tiny@v9", "no revision 'v9'"]),
        ("flcli/nothing", None, ["hf:flcli/nothing", "no dataset 'flcli/nothing'"]),
        ("flcli/broken", None, ["hf:flcli/broken", "did not answer", "HF_HUB_OFFLINE=1"]),
    ],
)
def test_what_the_hub_refuses_is_one_line(hub, name, requested, fragments):
    with pytest.raises(FLError) as refused:
        resolve_revision(name, requested, offline=False, endpoint=hub)
    message = str(refused.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_an_unreachable_hub_is_one_line(hub):
    closed = hub.rsplit(":", 1)[0] + ":1"  # nothing listens on port 1
    with pytest.raises(FLError, match="did not answer.*HF_HUB_OFFLINE=1"):
        resolve_revision("flcli/tiny", None, offline=False, endpoint=closed)


def write_hub_cache(root, refs):
    """The hub cache's layout for dataset flcli/tiny: refs/REF holds a commit, snapshots/SHA/."""
    repo = root / "datasets--flcli--tiny"
    (repo / "refs").mkdir(parents=True)
    for ref, sha in refs.items():
        (repo / "refs" / ref).write_text(sha)
        (repo / "snapshots" / sha).mkdir(parents=True, exist_ok=True)
    return root


def test_offline_the_cached_commit_is_recorded(tmp_path, hub):
    cache = write_hub_cache(tmp_path, {"main": SHAS["main"]})
    record = resolve_revision("flcli/tiny", None, offline=True, endpoint=hub, cache=cache)
    assert record["revision_requested"] == "main" and record["revision"] == SHAS["main"]
    assert "hub cache" in record["revision_note"]
    by_sha = resolve_revision("flcli/tiny", SHAS["main"], offline=True, cache=cache)
    assert by_sha["revision"] == SHAS["main"]
    assert FakeHub.asked == []  # offline: the hub is never asked


def test_offline_and_not_cached_records_the_revision_asked_for_with_a_note(tmp_path):
    cache = write_hub_cache(tmp_path, {"main": SHAS["main"]})
    record = resolve_revision("flcli/tiny", "v1", offline=True, cache=cache)
    assert record["revision"] == "v1" == record["revision_requested"]
    assert "not resolved" in record["revision_note"]
    other = resolve_revision("flcli/other", None, offline=True, cache=cache)
    assert other["revision"] == "main" and "not resolved" in other["revision_note"]


def test_a_hub_name_that_cannot_be_read_is_one_line(cli, tmp_path):
    """No network here (a ConnectError), or, with one, no such dataset: one line either way."""
    result = cli(
        "partition", "hf:flcli-tests/no-such-set", "--scheme", "iid", "--out", tmp_path / "p"
    )
    assert_one_line_error(result, "hf:flcli-tests/no-such-set")


def image_dataset(mode, extra_column=False, n=12):
    """A save_to_disk-able Dataset of n PIL images (5 high, 4 wide) of mode RGB or L, a label
    and, with extra_column, a number; and the images' pixels as NumPy holds them (H, W[, C])."""
    from PIL import Image

    generator = np.random.default_rng(1)
    shape = (n, 5, 4, 3) if mode == "RGB" else (n, 5, 4)
    pixels = generator.integers(0, 256, shape, dtype=np.uint8)
    columns = {
        "image": [Image.fromarray(p, mode=mode) for p in pixels],
        "label": (np.arange(n) % 2).tolist(),
    }
    if extra_column:
        columns["size"] = generator.random(n).tolist()
    data = datasets.Dataset.from_dict(columns).cast_column("image", datasets.Image())
    return data.cast_column("label", datasets.ClassLabel(names=["a", "b"])), pixels


@pytest.mark.parametrize("mode, shape", [("RGB", [3, 5, 4]), ("L", [1, 5, 4])])
def test_images_are_flattened_channels_first_and_record_their_shape(cli, tmp_path, mode, shape):
    from flcli.data.hf import image_block

    data, pixels = image_dataset(mode)
    block, found = image_block(data, "image", "hf:test")
    channels_first = pixels.transpose(0, 3, 1, 2) if mode == "RGB" else pixels[:, None]
    assert list(found) == shape
    assert np.array_equal(block.reshape(len(block), *found), channels_first)
    data.save_to_disk(str(tmp_path / "images"))
    out = tmp_path / "p"
    result = cli("partition", f"hf:{tmp_path / 'images'}", "--clients", "2", "--out", out)
    assert result.code == 0, result.err
    assert json.loads((out / "partition.json").read_text())["input_shape"] == shape


def test_images_beside_other_features_record_no_shape(cli, tmp_path):
    data, _ = image_dataset("RGB", extra_column=True)
    data.save_to_disk(str(tmp_path / "images"))
    out = tmp_path / "p"
    result = cli("partition", f"hf:{tmp_path / 'images'}", "--clients", "2", "--out", out)
    assert result.code == 0, result.err
    meta = json.loads((out / "partition.json").read_text())
    assert "input_shape" not in meta and meta["num_features"] == 3 * 5 * 4 + 1
    dropped = tmp_path / "q"
    args = ("partition", f"hf:{tmp_path / 'images'}", "--drop", "size", "--clients", "2")
    assert cli(*args, "--out", dropped).code == 0
    assert json.loads((dropped / "partition.json").read_text())["input_shape"] == [3, 5, 4]
