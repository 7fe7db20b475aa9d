"""SQLite persistence: tasks, their pending completions, callback deliveries and the attempt log.

Everything the background thread needs to resume after a restart lives here: a pending task's
``complete_at`` and a delivery's ``next_attempt_at`` are wall-clock epoch seconds. One
connection is shared by every thread behind a lock; the simulator's load is small and this
keeps each state change a single serialized transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scale_sim.exceptions import TaskNotFoundError, TaskStateError
from scale_sim.pagination import ListQuery
from scale_sim.tasks import iso_ms, parse_timestamp, task_view

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    project TEXT,
    batch TEXT,
    created_ms INTEGER NOT NULL,
    completed_ms INTEGER,
    completed_at TEXT,
    complete_at REAL,
    faults TEXT NOT NULL,
    body TEXT NOT NULL,
    response TEXT,
    callback_succeeded INTEGER
);
CREATE INDEX IF NOT EXISTS tasks_by_account ON tasks (account, created_ms DESC, task_id DESC);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (complete_at) WHERE complete_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL REFERENCES tasks (task_id),
    copy INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    held_since REAL,
    wrong_key INTEGER NOT NULL,
    url TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_by_task ON deliveries (task_id);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    delivery_id INTEGER NOT NULL,
    copy INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    at TEXT NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms INTEGER NOT NULL,
    wrong_key INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_task ON attempts (task_id, id);
"""

DELIVERY_STATES = ("pending", "held", "succeeded", "failed", "dropped")
"""pending: waits for next_attempt_at; held: a `reorder` callback waiting for a later task's;
succeeded/failed: done; dropped: the `drop` fault, never sent."""

_TASK_COLUMNS = "body, status, completed_at, response, callback_succeeded"


@dataclass(frozen=True)
class DeliveryPlan:
    """A delivery to insert when a task completes (one per copy)."""

    copy: int
    state: str
    url: str
    wrong_key: bool = False
    next_attempt_at: float | None = None
    held_since: float | None = None


@dataclass(frozen=True)
class Delivery:
    """One copy of a task's callback, as stored."""

    id: int
    task_id: str
    copy: int
    state: str
    attempts: int
    next_attempt_at: float | None
    wrong_key: bool
    url: str


@dataclass(frozen=True)
class DueCompletion:
    """A pending task whose completion time has come."""

    task: dict[str, Any]
    faults: dict[str, Any]


def _view(row: sqlite3.Row | tuple[Any, ...], *, with_callback_succeeded: bool = True) -> dict[str, Any]:
    body, status, completed_at, response, callback_succeeded = row[:5]
    return task_view(
        json.loads(body),
        status=status,
        completed_at=completed_at,
        response=json.loads(response) if response is not None else None,
        callback_succeeded=(
            bool(callback_succeeded) if with_callback_succeeded and callback_succeeded is not None else None
        ),
    )


def _delivery(row: sqlite3.Row | tuple[Any, ...]) -> Delivery:
    return Delivery(
        id=row[0],
        task_id=row[1],
        copy=row[2],
        state=row[3],
        attempts=row[4],
        next_attempt_at=row[5],
        wrong_key=bool(row[6]),
        url=row[7],
    )


_DELIVERY_COLUMNS = "id, task_id, copy, state, attempts, next_attempt_at, wrong_key, url"


class Store:
    """The simulator's SQLite database (a file, or ':memory:' for a throwaway one)."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        with self._lock:
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        """Close the connection; the store is unusable afterwards."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- tasks -------------------------------------------------------------------------------------

    def insert_task(
        self, task: dict[str, Any], *, account: str, complete_at: float | None, faults: dict[str, Any]
    ) -> None:
        """Store a new pending task; `complete_at` is when it completes by itself (None: only by hand)."""
        created_ms = parse_timestamp(task["created_at"])
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO tasks (task_id, account, type, status, project, batch, created_ms, complete_at,"
                " faults, body) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)",
                (
                    task["task_id"],
                    account,
                    task["type"],
                    task.get("project"),
                    task.get("batch"),
                    created_ms,
                    complete_at,
                    json.dumps(faults),
                    json.dumps(task),
                ),
            )

    def get_task(self, task_id: str, account: str | None = None) -> dict[str, Any]:
        """The task object; TaskNotFoundError if unknown or (when `account` is given) another account's."""
        rows = self._query(f"SELECT {_TASK_COLUMNS}, account FROM tasks WHERE task_id = ?", (task_id,))
        if not rows or (account is not None and rows[0][5] != account):
            raise TaskNotFoundError(f"No task with id {task_id}")
        return _view(rows[0])

    def callback_task(self, task_id: str) -> dict[str, Any]:
        """The task object as a callback carries it: the same on every try, so without callback_succeeded."""
        rows = self._query(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,))
        if not rows:
            raise TaskNotFoundError(f"No task with id {task_id}")
        return _view(rows[0], with_callback_succeeded=False)

    def task_faults(self, task_id: str) -> dict[str, Any]:
        """The task's own parsed `metadata.sim_faults`."""
        rows = self._query("SELECT faults FROM tasks WHERE task_id = ?", (task_id,))
        if not rows:
            raise TaskNotFoundError(f"No task with id {task_id}")
        faults: dict[str, Any] = json.loads(rows[0][0])
        return faults

    def cancel_task(self, task_id: str, account: str) -> dict[str, Any]:
        """Cancel a pending task; a completed or canceled one is a TaskStateError (500, as Scale answers)."""
        with self._transaction() as conn:
            row = conn.execute("SELECT status, account FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            if row is None or row[1] != account:
                raise TaskNotFoundError(f"No task with id {task_id}")
            if row[0] != "pending":
                raise TaskStateError(f"Task {task_id} is {row[0]}; only pending tasks can be canceled")
            conn.execute(
                "UPDATE tasks SET status = 'canceled', complete_at = NULL WHERE task_id = ?", (task_id,)
            )
        return self.get_task(task_id)

    def complete_task(
        self,
        task_id: str,
        response: dict[str, Any],
        *,
        completed_ms: int,
        completed_at: str,
        plans: Sequence[DeliveryPlan],
    ) -> dict[str, Any] | None:
        """Complete a pending task and queue its deliveries in one step; None if it is no longer pending."""
        with self._transaction() as conn:
            updated = conn.execute(
                "UPDATE tasks SET status = 'completed', completed_ms = ?, completed_at = ?,"
                " complete_at = NULL, response = ? WHERE task_id = ? AND status = 'pending'",
                (completed_ms, completed_at, json.dumps(response), task_id),
            ).rowcount
            if not updated:
                return None
            conn.executemany(
                "INSERT INTO deliveries (task_id, copy, state, next_attempt_at, held_since, wrong_key, url)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (task_id, p.copy, p.state, p.next_attempt_at, p.held_since, int(p.wrong_key), p.url)
                    for p in plans
                ],
            )
        return self.get_task(task_id)

    def due_completions(self, now: float, limit: int = 20) -> list[DueCompletion]:
        """Pending tasks whose completion time has come, oldest due first."""
        rows = self._query(
            f"SELECT {_TASK_COLUMNS}, faults FROM tasks WHERE complete_at IS NOT NULL AND complete_at <= ?"
            " AND status = 'pending' ORDER BY complete_at, created_ms, task_id LIMIT ?",
            (now, limit),
        )
        return [DueCompletion(_view(row), json.loads(row[5])) for row in rows]

    def list_tasks(self, account: str, query: ListQuery) -> tuple[list[dict[str, Any]], int, int]:
        """One page of the account's tasks, newest first: (docs, total matching, offset of the page)."""
        where = ["account = ?"]
        args: list[Any] = [account]
        for column, op, value in (
            ("created_ms", ">=", query.start_ms),
            ("created_ms", "<=", query.end_ms),
            ("completed_ms", ">=", query.completed_after_ms),
            ("completed_ms", "<=", query.completed_before_ms),
            ("status", "=", query.status),
            ("type", "=", query.type),
            ("project", "=", query.project),
            ("batch", "=", query.batch),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        condition = " AND ".join(where)
        with self._lock:
            total = self._conn.execute(f"SELECT COUNT(*) FROM tasks WHERE {condition}", args).fetchone()[0]
            order = "ORDER BY created_ms DESC, task_id DESC"
            if query.cursor is None:
                offset = query.offset
                rows = self._conn.execute(
                    f"SELECT {_TASK_COLUMNS} FROM tasks WHERE {condition} {order} LIMIT ? OFFSET ?",
                    [*args, query.limit, offset],
                ).fetchall()
            else:
                c, t = query.cursor.created_ms, query.cursor.task_id
                offset = self._conn.execute(
                    f"SELECT COUNT(*) FROM tasks WHERE {condition}"
                    " AND (created_ms > ? OR (created_ms = ? AND task_id >= ?))",
                    [*args, c, c, t],
                ).fetchone()[0]
                rows = self._conn.execute(
                    f"SELECT {_TASK_COLUMNS} FROM tasks WHERE {condition}"
                    f" AND (created_ms < ? OR (created_ms = ? AND task_id < ?)) {order} LIMIT ?",
                    [*args, c, c, t, query.limit],
                ).fetchall()
        return [_view(row) for row in rows], total, offset

    def recent_tasks(self, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Tasks of every account, newest first, for the HTML page."""
        where = "WHERE status = ?" if status else ""
        args: list[Any] = [status] if status else []
        rows = self._query(
            f"SELECT {_TASK_COLUMNS} FROM tasks {where} ORDER BY created_ms DESC, task_id DESC LIMIT ?",
            [*args, limit],
        )
        return [_view(row) for row in rows]

    # -- deliveries --------------------------------------------------------------------------------

    def due_deliveries(self, now: float, exclude: set[int], limit: int = 50) -> list[Delivery]:
        """Pending deliveries whose next try is due, oldest first, leaving out those already in flight."""
        rows = self._query(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?",
            (now, limit + len(exclude)),
        )
        return [d for d in map(_delivery, rows) if d.id not in exclude][:limit]

    def next_wakeup(self, exclude: set[int], hold_limit: float) -> float | None:
        """The earliest time something is due: a completion, a delivery try, or a hold running out."""
        with self._lock:
            times = [
                self._conn.execute(
                    "SELECT MIN(complete_at) FROM tasks WHERE complete_at IS NOT NULL AND status = 'pending'"
                ).fetchone()[0],
                self._conn.execute("SELECT MIN(held_since) FROM deliveries WHERE state = 'held'").fetchone()[
                    0
                ],
            ]
            if times[1] is not None:
                times[1] += hold_limit
            rows = self._conn.execute(
                "SELECT id, next_attempt_at FROM deliveries WHERE state = 'pending' ORDER BY next_attempt_at"
                " LIMIT ?",
                (len(exclude) + 1,),
            ).fetchall()
        times.append(next((at for ident, at in rows if ident not in exclude), None))
        found = [t for t in times if t is not None]
        return min(found) if found else None

    def release_held(
        self, *, now: float, except_task: str | None = None, held_before: float | None = None
    ) -> int:
        """Let held (`reorder`) deliveries go: those of other tasks, or those held since before a time."""
        sql = "UPDATE deliveries SET state = 'pending', held_since = NULL WHERE state = 'held'"
        args: list[Any] = []
        if except_task is not None:
            sql += " AND task_id != ?"
            args.append(except_task)
        if held_before is not None:
            sql += " AND held_since <= ?"
            args.append(held_before)
        with self._transaction() as conn:
            return conn.execute(sql, args).rowcount

    def record_attempt(
        self,
        delivery: Delivery,
        *,
        at: str,
        status_code: int | None,
        error: str | None,
        duration_ms: int,
        state: str,
        next_attempt_at: float | None,
    ) -> bool | None:
        """Log one try and move the delivery on; returns the task's callback_succeeded after it."""
        with self._transaction() as conn:
            attempt = delivery.attempts + 1
            conn.execute(
                "INSERT INTO attempts (task_id, delivery_id, copy, attempt, at, status_code, error,"
                " duration_ms, wrong_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    delivery.task_id,
                    delivery.id,
                    delivery.copy,
                    attempt,
                    at,
                    status_code,
                    error,
                    duration_ms,
                    int(delivery.wrong_key),
                ),
            )
            conn.execute(
                "UPDATE deliveries SET attempts = ?, state = ?, next_attempt_at = ? WHERE id = ?",
                (attempt, state, next_attempt_at, delivery.id),
            )
            states = {
                row[0]
                for row in conn.execute("SELECT state FROM deliveries WHERE task_id = ?", (delivery.task_id,))
            }
            # true on any 200; false only once no copy is left that could still get one.
            outcome: bool | None = None
            if "succeeded" in states:
                outcome = True
            elif "failed" in states and not states & {"pending", "held"}:
                outcome = False
            if outcome is not None:
                conn.execute(
                    "UPDATE tasks SET callback_succeeded = ? WHERE task_id = ?",
                    (int(outcome), delivery.task_id),
                )
            return outcome

    def delivery_log(self, task_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(deliveries, attempts) of a task, for `GET /v1/task/{id}/deliveries`."""
        with self._lock:
            deliveries = [
                {
                    "copy": row[0],
                    "state": row[1],
                    "attempts": row[2],
                    "next_attempt_at": iso_ms(int(row[3] * 1000)) if row[3] is not None else None,
                    "wrong_key": bool(row[4]),
                    "url": row[5],
                }
                for row in self._conn.execute(
                    "SELECT copy, state, attempts, next_attempt_at, wrong_key, url FROM deliveries"
                    " WHERE task_id = ? ORDER BY id",
                    (task_id,),
                )
            ]
            attempts = [
                {
                    "copy": row[0],
                    "attempt": row[1],
                    "at": row[2],
                    "status_code": row[3],
                    "error": row[4],
                    "duration_ms": row[5],
                    "wrong_key": bool(row[6]),
                }
                for row in self._conn.execute(
                    "SELECT copy, attempt, at, status_code, error, duration_ms, wrong_key FROM attempts"
                    " WHERE task_id = ? ORDER BY id",
                    (task_id,),
                )
            ]
        return deliveries, attempts
