"""A hub dataset's revision resolved to the commit it names, so that a partition records exactly
which data it read: asked of the Hugging Face hub (huggingface_hub, a dependency of `datasets`),
or, offline (HF_HUB_OFFLINE=1), read from the hub cache's refs, as huggingface_hub lays it out:
HF_HUB_CACHE/datasets--OWNER--NAME/refs/REVISION holds the commit a branch or tag was at when it
was downloaded, and snapshots/SHA/ the files of each commit.
"""

import re
from pathlib import Path

from flcli.errors import FLError, first_line

SHA = re.compile(r"[0-9a-f]{40}")
TIMEOUT_S = 10.0


def resolve_revision(
    name: str,
    requested: str | None,
    offline: bool,
    endpoint: str | None = None,
    cache: Path | None = None,
) -> dict[str, str]:
    """partition.json's record of a hub dataset's revision: `revision_requested` (as given, or
    main) and `revision`, the commit sha the hub gives, or offline the one the hub cache holds;
    offline and not in the cache, the requested one, with a `revision_note` saying so.
    endpoint: the hub's address (None: huggingface_hub's, HF_ENDPOINT); cache: the hub cache
    (None: HF_HUB_CACHE)."""
    asked = requested or "main"
    record = {"revision_requested": asked}
    if not offline:
        return {**record, "revision": hub_sha(name, asked, endpoint)}
    sha = cached_sha(name, asked, hub_cache() if cache is None else cache)
    if sha is not None:
        return {**record, "revision": sha, "revision_note": "offline: the hub cache's commit"}
    note = "offline and not in the hub cache: not resolved to a commit"
    return {**record, "revision": asked, "revision_note": note}


def hub_sha(name: str, revision: str, endpoint: str | None) -> str:
    """The commit sha the hub gives for revision of dataset name."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi(endpoint=endpoint).dataset_info(name, revision=revision, timeout=TIMEOUT_S)
    except RevisionNotFoundError:
        raise FLError(
            f"hf:{name}@{revision}: the hub has no revision {revision!r} of {name}; give one of "
            "its branches, tags or commit shas"
        ) from None
    except RepositoryNotFoundError:
        raise FLError(
            f"hf:{name}: the hub has no dataset {name!r} that you may read; check the name "
            "(a gated or private one needs `hf auth login`)"
        ) from None
    except Exception as e:  # no network, a proxy, a server error: one line, with the way out
        raise FLError(
            f"hf:{name}: the hub did not answer ({type(e).__name__}: {first_line(e)}); connect, "
            "or set HF_HUB_OFFLINE=1 to read the dataset from the cache, or give a save_to_disk "
            "folder"
        ) from None
    if not info.sha or not SHA.fullmatch(info.sha):
        raise FLError(
            f"hf:{name}@{revision}: the hub gave no commit sha ({info.sha!r}); give the "
            "revision as a commit sha"
        )
    return info.sha


def cached_sha(name: str, revision: str, cache: Path) -> str | None:
    """The commit of revision in the hub cache: a branch or tag's ref, or a commit sha whose
    snapshot is there; None when the cache does not hold it."""
    repo = cache / f"datasets--{name.replace('/', '--')}"
    if SHA.fullmatch(revision):
        return revision if (repo / "snapshots" / revision).is_dir() else None
    ref = repo / "refs" / revision
    if ".." in Path(revision).parts or not ref.is_file():
        return None
    sha = ref.read_text().strip()
    return sha if SHA.fullmatch(sha) else None


def hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)
