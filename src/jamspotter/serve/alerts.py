"""Jam-risk alerts of the operator dashboard, kept in SQLite so a restart keeps what nobody acknowledged yet.

One table, one row per alert: when it was raised, the class, confidence, reason and box of the riskiest
item, the frame it came from, a JPEG thumbnail, and when it was acknowledged (NULL until then). The file
is opened in WAL mode with a busy timeout, one short connection per operation, so the stream thread, the
request handlers and other processes (a second service, a script of the line's other systems) can read
and write it at once. A file that is not a jamspotter alert database (no matching `application_id`) is
refused, never written into.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from jamspotter.errors import DataError

APPLICATION_ID = 0x4A414D53  # "JAMS": marks the file as ours (PRAGMA application_id)
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10_000
MAX_LIMIT = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    label TEXT NOT NULL,
    confidence REAL,
    reason TEXT,
    bbox TEXT,
    frame INTEGER,
    time_s REAL,
    source TEXT,
    thumbnail BLOB,
    acked_at REAL
);
CREATE INDEX IF NOT EXISTS alerts_unacked ON alerts (acked_at, id);
"""
_COLUMNS = "id, time, label, confidence, reason, bbox, frame, time_s, source, thumbnail IS NOT NULL, acked_at"


@dataclass(frozen=True)
class Alert:
    """One stored alert; `acked_at` is None until someone acknowledges it (unix seconds, like `time`)."""

    id: int
    time: float
    label: str
    confidence: float | None
    reason: str | None
    bbox: list[float] | None
    frame: int | None
    time_s: float | None  # belt time of the frame within its stream
    source: str | None
    has_thumbnail: bool
    acked_at: float | None

    @property
    def acked(self) -> bool:
        return self.acked_at is not None

    def as_dict(self) -> dict:
        """JSON form for the API: the stored fields plus `acked` and `time_iso` (UTC, ISO 8601)."""
        out = asdict(self)
        out["acked"] = self.acked
        out["time_iso"] = datetime.fromtimestamp(self.time, timezone.utc).isoformat(timespec="milliseconds")
        return out


def _alert(row: tuple) -> Alert:
    id_, t, label, conf, reason, bbox, frame, time_s, source, has_thumb, acked_at = row
    return Alert(id_, t, label, conf, reason, json.loads(bbox) if bbox else None, frame, time_s, source,
                 bool(has_thumb), acked_at)


class AlertStore:
    """The alert table in the SQLite file at `path` (created, with its parent folder, when missing).

    Raises DataError when `path` cannot be opened or holds something other than a jamspotter alert database.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise DataError(f"{self.path}: is a folder, not an alert database file")
        existed = self.path.is_file() and self.path.stat().st_size > 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                app_id = db.execute("PRAGMA application_id").fetchone()[0]
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if existed and app_id != APPLICATION_ID:
                    raise DataError(f"{self.path}: not a jamspotter alert database; give a new file or one "
                                    "an earlier `jamspotter serve --db` made")
                if version > SCHEMA_VERSION:
                    raise DataError(f"{self.path}: alert database of a newer jamspotter (schema {version})")
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise DataError(f"{self.path}: cannot use as alert database ({e})") from None
        except OSError as e:
            raise DataError(f"{self.path}: cannot create alert database ({e.strerror or e})") from None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection: one transaction, committed on success, rolled back on error, then closed."""
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            with db:
                yield db
        finally:
            db.close()

    def add(self, label: str, *, confidence: float | None = None, reason: str | None = None,
            bbox: list[float] | None = None, frame: int | None = None, time_s: float | None = None,
            source: str | None = None, thumbnail: bytes | None = None, when: float | None = None) -> Alert:
        """Store a new, unacknowledged alert raised at `when` (unix seconds, default now); returns it."""
        t = time.time() if when is None else float(when)
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO alerts (time, label, confidence, reason, bbox, frame, time_s, source, thumbnail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (t, label, confidence, reason, json.dumps([float(v) for v in bbox]) if bbox is not None else None,
                 frame, time_s, source, thumbnail))
            return _alert(db.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id = ?", (cur.lastrowid,)).fetchone())

    def alerts(self, unacked: bool = False, limit: int = 50, before: int | None = None) -> list[Alert]:
        """Newest first: up to `limit` (1..MAX_LIMIT) alerts, only unacknowledged ones when `unacked`, only
        those with an id below `before` when given (to page back)."""
        limit = max(1, min(int(limit), MAX_LIMIT))
        where, args = [], []
        if unacked:
            where.append("acked_at IS NULL")
        if before is not None:
            where.append("id < ?")
            args.append(int(before))
        filters = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {_COLUMNS} FROM alerts {filters} ORDER BY id DESC LIMIT ?"
        with self._connect() as db:
            return [_alert(r) for r in db.execute(sql, (*args, limit))]

    def get(self, alert_id: int) -> Alert | None:
        """The alert with this id, None when there is none."""
        with self._connect() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return _alert(row) if row else None

    def thumbnail(self, alert_id: int) -> bytes | None:
        """The alert's JPEG thumbnail, None when the alert or its thumbnail does not exist."""
        with self._connect() as db:
            row = db.execute("SELECT thumbnail FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def ack(self, alert_id: int, when: float | None = None) -> Alert | None:
        """Acknowledge one alert (an alert acknowledged before keeps its first time); None when there is none."""
        t = time.time() if when is None else float(when)
        with self._connect() as db:
            db.execute("UPDATE alerts SET acked_at = ? WHERE id = ? AND acked_at IS NULL", (t, alert_id))
            row = db.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return _alert(row) if row else None

    def ack_all(self, up_to: int | None = None, when: float | None = None) -> int:
        """Acknowledge every unacknowledged alert (only those with id <= `up_to` when given, so an alert raised
        after the operator looked stays open); returns how many were acknowledged now."""
        t = time.time() if when is None else float(when)
        sql, args = "UPDATE alerts SET acked_at = ? WHERE acked_at IS NULL", [t]
        if up_to is not None:
            sql += " AND id <= ?"
            args.append(int(up_to))
        with self._connect() as db:
            return db.execute(sql, args).rowcount

    def unacked_count(self) -> int:
        """How many alerts wait for an acknowledgement."""
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM alerts WHERE acked_at IS NULL").fetchone()[0]
