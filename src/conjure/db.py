"""The SQL store shared by job records (service) and the audit log (provenance): one SQLAlchemy engine per
URL, one declarative `Base`. SQLite by default (WAL, so readers never block the writer), PostgreSQL when
scaled out. Nothing connects at import."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


class Base(DeclarativeBase):
    """Every conjure table derives from this, so `create_all(engine)` makes the whole schema."""


_engines: dict[str, Engine] = {}
_known_tables: dict[str, int] = {}   # per URL: how many of Base's tables create_all has seen
_lock = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for `url` (default: the settings' store). Tables are created on first use,
    and again whenever a module that defines more of them has been imported since."""
    if url is None:
        from conjure.config import get_settings
        url = get_settings().db_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _make_engine(url)
        if _known_tables.get(url) != len(Base.metadata.tables):
            _create_tables(engine)
            _known_tables[url] = len(Base.metadata.tables)
        return engine


def _create_tables(engine: Engine) -> None:
    """`create_all`, serialised across processes on PostgreSQL (workers starting together would otherwise race
    to create the same table and one would fail on a duplicate type name)."""
    if engine.dialect.name != "postgresql":
        try:
            Base.metadata.create_all(engine)
        except OperationalError as e:          # another process (a worker starting with the server) made it
            if "already exists" not in str(e):
                raise
            Base.metadata.create_all(engine)
        return
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(7400310)"))   # any fixed number: conjure's schema lock
        Base.metadata.create_all(conn)


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):   # WAL: concurrent readers; NORMAL sync is durable under WAL
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()
    return engine


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    """Sessions on the engine for `url`; use as `with session_factory()() as s, s.begin(): ...`."""
    return sessionmaker(get_engine(url), expire_on_commit=False)


def reset_engines() -> None:
    """Dispose every engine (tests, and a worker after fork: connections must not cross processes)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _known_tables.clear()
