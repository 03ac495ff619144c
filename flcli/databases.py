"""The SQL databases flcli hands to other libraries: MLflow's store (flcli/tracking.py) and Optuna's
study (flcli/tune.py). A damaged SQLite file, a folder where the file should be, or a missing
database driver is one line here, rather than SQLAlchemy's traceback or minutes of retries."""

import sqlite3
from contextlib import closing
from pathlib import Path

from flcli.errors import FLError

SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database
# the pip package of each database driver SQLAlchemy imports (flcli's extras bring none of them)
DRIVERS = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient"}


def check_sqlite_file(file: Path, where: str, example: str, damaged_fix: str) -> None:
    """The file of a sqlite:/// URL, when it exists: a SQLite database that opens and whose pages
    are whole. where: how the user named it (`--storage sqlite:///x.db`); example: a database
    file name for the fix; damaged_fix: what to do with a damaged database. Creates nothing."""
    if file.is_dir():
        raise FLError(
            f"{where}: {file} is a folder; name a database file in it, e.g. "
            f"sqlite:///{file / example}"
        )
    if file.parent.exists() and not file.parent.is_dir():
        raise FLError(f"{where}: {file.parent} is a file, not a folder; choose another path")
    if not file.is_file():
        return
    with file.open("rb") as handle:
        head = handle.read(len(SQLITE_HEADER))
    if not head:
        return  # an empty file: SQLite makes a new database in it
    if head != SQLITE_HEADER:
        raise FLError(
            f"{where}: {file} is not a SQLite database; give a new file, e.g. sqlite:///{example}"
        )
    problem = sqlite_problem(file)
    if problem:
        raise FLError(f"{where}: {file} is damaged ({problem}); {damaged_fix}")


def sqlite_problem(file: Path) -> str | None:
    """What SQLite finds wrong with the database file, read only (None: nothing)."""
    try:
        with closing(sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)) as database:
            verdict = database.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.DatabaseError as failure:  # a truncated file: 'database disk image is malformed'
        return str(failure)
    return None if verdict == "ok" else verdict
