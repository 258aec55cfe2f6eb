"""The dashboard's alert store (SQLite): add, list, acknowledge one and all, survives reopening, concurrent writers,
and never writes into a file that is not its own."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from jamspotter.errors import DataError
from jamspotter.serve.alerts import AlertStore


def test_add_list_ack_and_ack_all(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.db")
    a = store.add("rope", confidence=0.9, reason="long and thin", bbox=[1, 2, 30, 40], frame=3, time_s=1.5,
                  source="cam", thumbnail=b"\xff\xd8jpeg", when=1000.0)
    b = store.add("plastic film", when=1001.0)
    store.add("hose", when=1002.0)
    assert (a.id, a.label, a.confidence, a.reason, a.bbox, a.frame, a.time_s, a.source) == \
        (1, "rope", 0.9, "long and thin", [1.0, 2.0, 30.0, 40.0], 3, 1.5, "cam")
    assert a.has_thumbnail and not b.has_thumbnail and not a.acked
    assert a.as_dict()["time_iso"] == "1970-01-01T00:16:40.000+00:00"
    assert [x.id for x in store.alerts()] == [3, 2, 1]  # newest first
    assert [x.id for x in store.alerts(limit=2)] == [3, 2]
    assert [x.id for x in store.alerts(before=3)] == [2, 1]
    assert store.thumbnail(1) == b"\xff\xd8jpeg" and store.thumbnail(2) is None and store.thumbnail(99) is None

    acked = store.ack(2, when=2000.0)
    assert acked.acked_at == 2000.0 and acked.acked
    assert store.ack(2, when=3000.0).acked_at == 2000.0  # the first acknowledgement stands
    assert store.ack(99) is None
    assert [x.id for x in store.alerts(unacked=True)] == [3, 1] and store.unacked_count() == 2

    assert store.ack_all(up_to=1, when=4000.0) == 1  # alert 3 came after what the operator saw: stays open
    assert [x.id for x in store.alerts(unacked=True)] == [3]
    assert store.ack_all(when=5000.0) == 1 and store.ack_all() == 0
    assert store.unacked_count() == 0 and store.get(3).acked_at == 5000.0


def test_reopening_keeps_unacknowledged_alerts(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "alerts.db"  # the parent folder is created
    first = AlertStore(path)
    first.add("rope")
    first.add("wire")
    first.ack(1)
    again = AlertStore(path)
    assert [(x.id, x.label, x.acked) for x in again.alerts()] == [(2, "wire", False), (1, "rope", True)]
    assert again.add("hose").id == 3  # ids never reused
    # read straight from the file with sqlite3: WAL mode, the columns as documented
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT id, label, acked_at IS NULL FROM alerts ORDER BY id").fetchall() == \
        [(1, "rope", 0), (2, "wire", 1), (3, "hose", 1)]
    db.close()


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    AlertStore(path)
    # another process (e.g. a second service on the same file) writes 40 alerts while 4 threads here write 4 x 40
    # and acknowledge as they go
    code = ("import sys; from jamspotter.serve.alerts import AlertStore; s = AlertStore(sys.argv[1])\n"
            "for i in range(40): s.add('proc', frame=i)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            store = AlertStore(path)
            for i in range(40):
                store.add(name, frame=i)
                if i % 10 == 9:
                    store.ack_all()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(f"t{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert proc.wait(60) == 0 and not errors
    rows = sqlite3.connect(path).execute("SELECT label, frame FROM alerts").fetchall()
    assert len(rows) == 200 and len(set(rows)) == 200
    assert sorted(f for label, f in rows if label == "proc") == list(range(40))


def test_a_file_that_is_not_an_alert_database_is_refused_untouched(tmp_path: Path) -> None:
    text = tmp_path / "model.safetensors"
    text.write_bytes(b"not sqlite at all" * 10)
    with pytest.raises(DataError, match="model.safetensors"):
        AlertStore(text)
    assert text.read_bytes() == b"not sqlite at all" * 10

    other = tmp_path / "other.db"  # somebody else's SQLite database
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    before = other.read_bytes()
    with pytest.raises(DataError, match="not a jamspotter alert database"):
        AlertStore(other)
    assert other.read_bytes() == before

    with pytest.raises(DataError, match="folder"):
        AlertStore(tmp_path)
    empty = tmp_path / "empty.db"
    empty.touch()  # an empty file is a new database
    assert AlertStore(empty).add("rope").id == 1
