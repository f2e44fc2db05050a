"""Where the warehouse lives and how DuckDB reaches it: a DuckLake.

A warehouse is a DuckLake: table data as Parquet files under a data path, metadata
(tables, files, snapshots) in a SQL catalog database. Two settings say where:

- the catalog: `MODELARTS_CATALOG` (or `--catalog`), default `<folder>/catalog.sqlite`.
  SQLite is the embedded default because readers in other processes can attach while a
  writer commits; a DuckDB-file catalog is locked by its writer. `postgresql://…` is the
  shared catalog for teams and parallel writers.
- the data path: `MODELARTS_DATA_PATH`, default `<folder>/data/`; `s3://bucket/prefix/`
  for object storage, with its endpoint and keys from the environment (`s3_secret_sql`).

The warehouse folder itself always holds the writers' lock file. Secrets never enter a
setting: they come from the environment when a connection is made, and are not logged.
"""
from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb

from warehouse import analysis, schema

ALIAS = "modelarts"  # the name the lake is attached under, everywhere (README: attach it AS modelarts)
CATALOG_FILE = "catalog.sqlite"
DATA_DIR = "data"
DUCKDB_VERSION = "v1.5.5"
# PyPI package (duckdb-extension-<package>) -> the extension's own name, which DuckDB looks for
EXTENSION_PACKAGES = {"ducklake": "ducklake", "sqlite": "sqlite_scanner", "postgres": "postgres_scanner",
                      "httpfs": "httpfs"}


class LakeError(Exception):
    """A setting the user can fix; the message says how."""


@dataclass(frozen=True)
class LakeConfig:
    """Where one warehouse lives. `root` is the local folder (lock, default catalog and data)."""

    root: Path
    catalog: str  # "sqlite:<path>" or "postgres:<libpq connection string>"
    data_path: str  # a folder path, or s3://bucket/prefix/

    @classmethod
    def for_folder(cls, root: str | os.PathLike, catalog: str | None = None,
                   data_path: str | None = None) -> "LakeConfig":
        root = Path(root).absolute()
        catalog = catalog or os.environ.get("MODELARTS_CATALOG") or ""
        data_path = data_path or os.environ.get("MODELARTS_DATA_PATH") or str(root / DATA_DIR)
        return cls(root, _catalog_spec(catalog, root), _data_path_spec(data_path))

    @property
    def embedded(self) -> bool:
        return self.catalog.startswith("sqlite:")

    @property
    def sqlite_file(self) -> Path | None:
        return Path(self.catalog.removeprefix("sqlite:")) if self.embedded else None

    @property
    def local_data(self) -> bool:
        return "://" not in self.data_path

    def exists(self) -> bool:
        """Whether a catalog is there to open (a shared catalog is assumed to be)."""
        return not self.embedded or self.sqlite_file.exists()

    def describe(self) -> str:
        """For messages: the catalog and data path, without any credential."""
        catalog = self.catalog if self.embedded else "postgres:" + _without_password(self.catalog[9:])
        return f"catalog {catalog}, data {self.data_path}"


def _catalog_spec(value: str, root: Path) -> str:
    if not value:
        return f"sqlite:{root / CATALOG_FILE}"
    if value.startswith(("postgresql://", "postgres://")):
        return "postgres:" + value  # libpq takes the URL as its connection string
    if value.startswith("postgres:"):
        return value
    if value.startswith("sqlite:"):
        return "sqlite:" + str(Path(value[7:]).absolute())
    raise LakeError(f"MODELARTS_CATALOG={value!r} is not a catalog this package knows: "
                    "use postgresql://user@host:port/dbname, or sqlite:<file>, or leave it unset for "
                    f"<warehouse>/{CATALOG_FILE}")


def _data_path_spec(value: str) -> str:
    if value.startswith("s3://"):
        return value.rstrip("/") + "/"
    if "://" in value:
        raise LakeError(f"data path {value!r}: use a local folder or s3://bucket/prefix (OBS speaks S3)")
    return str(Path(value).absolute()) + os.sep


def _without_password(conninfo: str) -> str:
    if "://" in conninfo and "@" in conninfo:
        scheme, rest = conninfo.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return " ".join(p for p in conninfo.split() if not p.startswith("password="))


# -- extensions ---------------------------------------------------------------------------------
def extension_directory() -> Path | None:
    """An extension folder laid out as DuckDB expects (`<dir>/v1.5.5/<platform>/<name>.duckdb_extension`),
    linking the signed binaries that the pinned `duckdb-extension-*` packages installed. None when the
    packages are absent: DuckDB's own INSTALL then fetches the extensions from its repository."""
    sources = {}
    for package, name in EXTENSION_PACKAGES.items():
        try:
            module = __import__(f"duckdb_extension_{package}")
        except ImportError:
            return None
        path = Path(module.__file__).parent / "extensions" / DUCKDB_VERSION / f"{package}.duckdb_extension"
        if not path.exists():
            return None
        sources[name] = path
    for base in _extension_bases():
        try:
            _link_extensions(base, sources)
        except OSError:
            continue
        return base
    return None


def _extension_bases() -> list[Path]:
    """The user's cache, else the temp folder (a read-only home must not send DuckDB to the network)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [cache / "modelarts-etl" / "duckdb-extensions",
            Path(tempfile.gettempdir()) / f"modelarts-etl-{os.getuid()}" / "duckdb-extensions"]


def _link_extensions(base: Path, sources: dict[str, Path]) -> None:
    with duckdb.connect() as con:  # its own connection: the module-level one is not safe across threads
        folder = base / DUCKDB_VERSION / con.execute("PRAGMA platform").fetchone()[0]
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        link = folder / f"{name}.duckdb_extension"
        if not link.exists() or link.resolve() != source.resolve():
            tmp = folder / f".{name}.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(source)
            os.replace(tmp, link)


def new_connection(*, memory_limit: str | None = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with DuckLake loaded. Unsigned extensions stay refused: DuckDB checks the
    signature of every binary on LOAD."""
    config = {"allow_unsigned_extensions": False}
    ext_dir = extension_directory()
    if ext_dir is not None:
        config.update(extension_directory=str(ext_dir), autoinstall_known_extensions=False)
    if memory_limit:
        config["memory_limit"] = memory_limit
    if threads:
        config["threads"] = threads
    con = duckdb.connect(config=config)
    if ext_dir is None:
        con.execute("INSTALL ducklake")
    con.execute("LOAD ducklake")
    return con


# -- attaching ---------------------------------------------------------------------------------
def attach(con: duckdb.DuckDBPyConnection, config: LakeConfig, *, read_only: bool = False,
           snapshot: int | None = None, at_time: str | None = None, alias: str = ALIAS) -> None:
    """Attach the lake as `alias`. A reader never takes a lock a writer waits for."""
    if config.embedded:
        if not read_only:
            _prepare_sqlite(config.sqlite_file)
        elif not config.sqlite_file.exists():
            raise LakeError(f"no warehouse at {config.root} (no {config.sqlite_file.name}): "
                            "run `modelarts-etl ingest` or `sync` first, or pass the folder")
    if not config.local_data:
        con.execute("LOAD httpfs")
        con.execute(s3_secret_sql())
    options = [f"DATA_PATH {sql_literal(config.data_path)}"]
    if config.local_data:
        options.append("OVERRIDE_DATA_PATH true")  # a moved warehouse folder reads its files where they are now
    if read_only:
        options.append("READ_ONLY")
    if snapshot is not None:
        options.append(f"SNAPSHOT_VERSION {int(snapshot)}")
    if at_time is not None:
        options.append(f"SNAPSHOT_TIME {sql_literal(at_time)}")
    try:
        con.execute(f"ATTACH {sql_literal('ducklake:' + config.catalog)} AS {alias} ({', '.join(options)})")
    except duckdb.Error as exc:
        raise LakeError(f"cannot open the warehouse ({config.describe()}): {_first_line(exc)}") from None


def initialised(config: LakeConfig) -> bool:
    """Whether the embedded catalog holds a DuckLake: a first load killed (kill -9) before DuckLake made
    its tables leaves an empty catalog.sqlite, which is no warehouse yet, not a damaged one.

    Read with DuckDB's own SQLite, never Python's sqlite3: two SQLite libraries in one process share
    POSIX locks on the file without knowing it, and the one that closes drops the other's locks (a
    DuckDB connection of this process then died with SIGBUS on the catalog's shared-memory file).
    """
    if not config.embedded:
        return True
    con = new_connection()
    try:
        con.execute("LOAD sqlite_scanner")
        con.execute(f"ATTACH {sql_literal(str(config.sqlite_file))} AS probe (TYPE sqlite, READ_ONLY)")
        return con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'probe' "
                           "AND table_name = 'ducklake_metadata'").fetchone()[0] > 0
    except duckdb.Error:
        return True  # unreadable: let the attach say what is wrong
    finally:
        con.close()


SQLITE_WAL_HEADER = b"\x02\x02"  # bytes 18-19 of a SQLite file: write and read versions, 2 = WAL


def _prepare_sqlite(path: Path) -> None:
    """WAL journal: readers of the catalog never block the writer's commit, nor it them.

    WAL is a property of the file, set once: a catalog whose header says so is left alone, so Python's
    sqlite3 (a second SQLite library in a process where DuckDB may have the catalog open) touches only a
    new catalog, or one an old version made without WAL.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "rb") as file:
            if file.read(20)[18:20] == SQLITE_WAL_HEADER:
                return
    except FileNotFoundError:
        pass
    db = None
    try:
        db = sqlite3.connect(path)
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as exc:  # not an OperationalError about the disk: the file itself
        if isinstance(exc, sqlite3.OperationalError) and "locked" not in str(exc):
            raise OSError(f"{path}: {exc}") from None
        raise LakeError(f"cannot open the catalog {path}: {exc}") from None
    finally:
        if db is not None:
            db.close()


def s3_secret_sql() -> str:
    """A DuckDB secret for the data path, from the environment (the AWS names, as OBS's S3 tools use)."""
    env = os.environ
    parts = ["TYPE s3"]
    for key, var in (("KEY_ID", "AWS_ACCESS_KEY_ID"), ("SECRET", "AWS_SECRET_ACCESS_KEY"),
                     ("SESSION_TOKEN", "AWS_SESSION_TOKEN"), ("REGION", "AWS_REGION"),
                     ("ENDPOINT", "MODELARTS_S3_ENDPOINT"), ("URL_STYLE", "MODELARTS_S3_URL_STYLE")):
        if env.get(var):
            parts.append(f"{key} {sql_literal(env[var])}")
    if env.get("MODELARTS_S3_USE_SSL"):
        parts.append(f"USE_SSL {'true' if env['MODELARTS_S3_USE_SSL'].lower() in ('1', 'true', 'yes') else 'false'}")
    return f"CREATE OR REPLACE SECRET modelarts_s3 ({', '.join(parts)})"


def create_tables(con: duckdb.DuckDBPyConnection, alias: str = ALIAS) -> None:
    """Every stored table and view of the contract, in the lake; columns added to the contract since
    the lake was made are added to its tables. One snapshot, and only when something changed."""
    stored = {(t, c) for t, c in con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'main'",
        [alias]).fetchall()}
    tables = {t for t, _ in stored}
    statements = []
    for table in schema.STORED_TABLES:
        if table.name not in tables:
            statements.append(table.ddl(f'{alias}."{table.name}"'))
            statements += table.comments(f'{alias}."{table.name}"')
        else:
            statements += [f'ALTER TABLE {alias}."{table.name}" ADD COLUMN "{c.name}" {c.duckdb_type}'
                           for c in table.columns if (table.name, c.name) not in stored]
    views = {v for (v,) in con.execute("SELECT view_name FROM duckdb_views() WHERE database_name = ?",
                                       [alias]).fetchall()}
    for view in schema.VIEWS + analysis.ANALYSIS_VIEWS:
        if view.name not in views:
            statements.append(view.ddl(f'{alias}."{view.name}"'))
        elif any((view.name, c) not in stored for c in view.column_names):  # the contract added a column
            statements += [f'DROP VIEW {alias}."{view.name}"', view.ddl(f'{alias}."{view.name}"')]
    if not statements:
        return
    con.execute("BEGIN")
    try:
        for sql in statements:
            con.execute(sql)
        con.execute(f"CALL {alias}.set_option('data_inlining_row_limit', 0)")  # every row in Parquet
        con.execute(f"CALL {alias}.set_option('parquet_compression', 'zstd')")  # a third smaller than snappy, as fast
        con.execute(f"CALL {alias}.set_commit_message('modelarts-etl', 'create tables', "
                    "extra_info => '{\"step\": \"schema\"}')")
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # a failed COMMIT has rolled back already
        raise


def sql_literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
