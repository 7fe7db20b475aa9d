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

from scale_sim.exceptions import DuplicateTaskError, InvalidRequestError, TaskNotFoundError, TaskStateError
from scale_sim.pagination import ListQuery
from scale_sim.tasks import callback_body, iso_ms, task_view, timestamp_ms


def _after(now_ms: int, updated_ms: int | None) -> int:
    """The time of a task's next change: now, but always later than its last change (strict order)."""
    return now_ms if updated_ms is None or now_ms > updated_ms else updated_ms + 1


SCHEMA_VERSION = 2
"""PRAGMA user_version of the current layout; version 1 (no events, no review state) is migrated in place."""

TABLES = """
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
    callback_succeeded INTEGER,
    updated_ms INTEGER,
    unique_id TEXT,
    tags TEXT,
    audits TEXT,
    customer_review_status TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL REFERENCES tasks (task_id),
    name TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL REFERENCES tasks (task_id),
    copy INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    held_since REAL,
    wrong_key INTEGER NOT NULL,
    url TEXT NOT NULL,
    event_id INTEGER REFERENCES events (id)
);
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
"""

INDEXES = """
CREATE INDEX IF NOT EXISTS tasks_by_account ON tasks (account, created_ms DESC, task_id DESC);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (complete_at) WHERE complete_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_by_update ON tasks (account, updated_ms);
CREATE INDEX IF NOT EXISTS tasks_by_unique_id ON tasks (account, unique_id) WHERE unique_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_task ON events (task_id, id);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_by_task ON deliveries (task_id);
CREATE INDEX IF NOT EXISTS attempts_by_task ON attempts (task_id, id);
"""

_ADDED_COLUMNS = {
    "tasks": (
        ("updated_ms", "INTEGER"),
        ("unique_id", "TEXT"),
        ("tags", "TEXT"),
        ("audits", "TEXT"),
        ("customer_review_status", "TEXT"),
    ),
    "deliveries": (("event_id", "INTEGER REFERENCES events (id)"),),
}
"""Columns version 2 added to version-1 tables; an old file gets them with ALTER TABLE when opened."""

DELIVERY_STATES = ("pending", "held", "succeeded", "failed", "dropped")
"""pending: waits for next_attempt_at; held: a `reorder` callback waiting for a later task's;
succeeded/failed: done; dropped: the `drop` fault, never sent."""

_TASK_COLUMNS = "body, status, completed_at, response, callback_succeeded, updated_ms, audits, customer_review_status"
_N = 8  # columns in _TASK_COLUMNS: what a query selects after them starts at row[_N]


@dataclass(frozen=True)
class DeliveryPlan:
    """A delivery to insert for an event (one per copy)."""

    copy: int
    state: str
    url: str
    wrong_key: bool = False
    next_attempt_at: float | None = None
    held_since: float | None = None


@dataclass(frozen=True)
class CallbackCopy:
    """One copy of one event's callback, as stored (event_id None: queued by a version-1 simulator)."""

    id: int
    task_id: str
    copy: int
    state: str
    attempts: int
    next_attempt_at: float | None
    wrong_key: bool
    url: str
    event_id: int | None = None


@dataclass(frozen=True)
class DueCompletion:
    """A pending task whose completion time has come."""

    task: dict[str, Any]
    faults: dict[str, Any]


def _view(row: sqlite3.Row | tuple[Any, ...], *, with_callback_succeeded: bool = True) -> dict[str, Any]:
    body, status, completed_at, response, callback_succeeded, updated_ms, audits, review = row[:_N]
    return task_view(
        json.loads(body),
        status=status,
        updated_at=iso_ms(updated_ms) if updated_ms is not None else None,
        completed_at=completed_at,
        response=json.loads(response) if response is not None else None,
        audits=json.loads(audits) if audits else [],
        customer_review_status=review,
        callback_succeeded=(
            bool(callback_succeeded) if with_callback_succeeded and callback_succeeded is not None else None
        ),
        recalled=status == "pending" and completed_at is not None,
    )


def _delivery(row: sqlite3.Row | tuple[Any, ...]) -> CallbackCopy:
    return CallbackCopy(
        id=row[0],
        task_id=row[1],
        copy=row[2],
        state=row[3],
        attempts=row[4],
        next_attempt_at=row[5],
        wrong_key=bool(row[6]),
        url=row[7],
        event_id=row[8],
    )


_DELIVERY_COLUMNS = "id, task_id, copy, state, attempts, next_attempt_at, wrong_key, url, event_id"


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a version-1 file up to SCHEMA_VERSION: add the new columns, give old tasks an updated_ms."""
    for table, columns in _ADDED_COLUMNS.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, declaration in columns:
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
    conn.execute("UPDATE tasks SET updated_ms = COALESCE(completed_ms, created_ms) WHERE updated_ms IS NULL")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


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
            self._conn.executescript(TABLES)
            with self._transaction() as conn:
                _migrate(conn)
            self._conn.executescript(INDEXES)

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
        """Store a new pending task; `complete_at` is when it completes by itself (None: only by hand).

        A `unique_id` already used by another of the account's tasks is a DuplicateTaskError (409).
        """
        created_ms = timestamp_ms(task["created_at"])
        with self._transaction() as conn:
            unique_id = task.get("unique_id")
            if unique_id is not None:
                taken = conn.execute(
                    "SELECT task_id FROM tasks WHERE account = ? AND unique_id = ?", (account, unique_id)
                ).fetchone()
                if taken is not None:
                    raise DuplicateTaskError(f"A task with unique_id {unique_id!r} already exists (task {taken[0]})")
            conn.execute(
                "INSERT INTO tasks (task_id, account, type, status, project, batch, created_ms, complete_at,"
                " faults, body, updated_ms, unique_id, tags)"
                " VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    created_ms,
                    unique_id,
                    json.dumps(task.get("tags") or []),
                ),
            )

    def get_task(self, task_id: str, account: str | None = None) -> dict[str, Any]:
        """The task object; TaskNotFoundError if unknown or (when `account` is given) another account's."""
        rows = self._query(f"SELECT {_TASK_COLUMNS}, account FROM tasks WHERE task_id = ?", (task_id,))
        if not rows or (account is not None and rows[0][_N] != account):
            raise TaskNotFoundError(f"No task with id {task_id}")
        return _view(rows[0])

    def task_account(self, task_id: str) -> str:
        """The id of the account a task belongs to (TaskNotFoundError if unknown)."""
        rows = self._query("SELECT account FROM tasks WHERE task_id = ?", (task_id,))
        if not rows:
            raise TaskNotFoundError(f"No task with id {task_id}")
        account: str = rows[0][0]
        return account

    def callback_task(self, task_id: str) -> dict[str, Any]:
        """The task object as a callback carries it: the same on every try, so without callback_succeeded."""
        rows = self._query(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,))
        if not rows:
            raise TaskNotFoundError(f"No task with id {task_id}")
        return _view(rows[0], with_callback_succeeded=False)

    def is_test(self, task_id: str) -> bool:
        """Whether the task was created with a test key (its callbacks carry the test callback key)."""
        rows = self._query("SELECT json_extract(body, '$.is_test') FROM tasks WHERE task_id = ?", (task_id,))
        if not rows:
            raise TaskNotFoundError(f"No task with id {task_id}")
        return bool(rows[0][0])

    def task_faults(self, task_id: str) -> dict[str, Any]:
        """The task's own parsed `metadata.sim_faults`."""
        rows = self._query("SELECT faults FROM tasks WHERE task_id = ?", (task_id,))
        if not rows:
            raise TaskNotFoundError(f"No task with id {task_id}")
        faults: dict[str, Any] = json.loads(rows[0][0])
        return faults

    def cancel_task(self, task_id: str, account: str, *, now_ms: int) -> dict[str, Any]:
        """Cancel a pending task; a completed or canceled one is a TaskStateError (500, as Scale answers)."""
        with self._transaction() as conn:
            row = conn.execute("SELECT status, account, updated_ms FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            if row is None or row[1] != account:
                raise TaskNotFoundError(f"No task with id {task_id}")
            if row[0] != "pending":
                raise TaskStateError(f"Task {task_id} is {row[0]}; only pending tasks can be canceled")
            conn.execute(
                "UPDATE tasks SET status = 'canceled', complete_at = NULL, updated_ms = ? WHERE task_id = ?",
                (_after(now_ms, row[2]), task_id),
            )
        return self.get_task(task_id)

    def _state(self, conn: sqlite3.Connection, task_id: str) -> tuple[str, int, str | None]:
        """(status, updated_ms, completed_at) of a task inside a transaction."""
        row = conn.execute(
            "SELECT status, updated_ms, completed_at FROM tasks WHERE task_id = ?", (task_id,)
        ).fetchone()
        if row is None:
            raise TaskNotFoundError(f"No task with id {task_id}")
        return row[0], row[1], row[2]

    def _emit(
        self, conn: sqlite3.Connection, task_id: str, name: str, at_ms: int, plans: Sequence[DeliveryPlan]
    ) -> dict[str, Any]:
        """Record an event with its callback body (the task as it is now) and queue its deliveries."""
        conn.execute("UPDATE tasks SET callback_succeeded = NULL WHERE task_id = ?", (task_id,))
        row = conn.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        task = _view(row, with_callback_succeeded=False)
        event_id = conn.execute(
            "INSERT INTO events (task_id, name, at_ms, body) VALUES (?, ?, ?, ?)",
            (task_id, name, at_ms, callback_body(task)),
        ).lastrowid
        conn.executemany(
            "INSERT INTO deliveries (task_id, copy, state, next_attempt_at, held_since, wrong_key, url, event_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (task_id, p.copy, p.state, p.next_attempt_at, p.held_since, int(p.wrong_key), p.url, event_id)
                for p in plans
            ],
        )
        return task

    def complete_task(
        self,
        task_id: str,
        response: dict[str, Any],
        *,
        now_ms: int,
        plans: Sequence[DeliveryPlan],
    ) -> dict[str, Any] | None:
        """Complete a pending task (new or recalled) and queue its deliveries; None if it is not pending.

        completed_at is later than every earlier change (audits included), even within one millisecond,
        so a receiver can tell this completion from the audits before it.
        """
        with self._transaction() as conn:
            status, updated_ms, _ = self._state(conn, task_id)
            if status != "pending":
                return None
            at_ms = _after(now_ms, updated_ms)
            conn.execute(
                "UPDATE tasks SET status = 'completed', completed_ms = ?, completed_at = ?, complete_at = NULL,"
                " response = ?, updated_ms = ? WHERE task_id = ?",
                (at_ms, iso_ms(at_ms), json.dumps(response), at_ms, task_id),
            )
            self._emit(conn, task_id, "completed", at_ms, plans)
        return self.get_task(task_id)

    def error_task(
        self, task_id: str, response: dict[str, Any], *, now_ms: int, plans: Sequence[DeliveryPlan]
    ) -> dict[str, Any] | None:
        """An error at creation: a pending, never completed task gets status error; None otherwise."""
        with self._transaction() as conn:
            status, updated_ms, completed_at = self._state(conn, task_id)
            if status != "pending" or completed_at is not None:
                return None
            at_ms = _after(now_ms, updated_ms)
            conn.execute(
                "UPDATE tasks SET status = 'error', complete_at = NULL, response = ?, updated_ms = ? WHERE task_id = ?",
                (json.dumps(response), at_ms, task_id),
            )
            self._emit(conn, task_id, "error", at_ms, plans)
        return self.get_task(task_id)

    def audit_task(
        self,
        task_id: str,
        audit: dict[str, Any],
        *,
        response: dict[str, Any] | None,
        now_ms: int,
        plans: Sequence[DeliveryPlan],
    ) -> dict[str, Any]:
        """Append an audit to a completed task (a fixed one replaces the response) and queue its callback.

        `audit` gets its `audited_at` here (the event's time); InvalidRequestError unless the task is completed.
        """
        with self._transaction() as conn:
            status, updated_ms, _ = self._state(conn, task_id)
            if status != "completed":
                raise InvalidRequestError(f"Task {task_id} is {status}; only completed tasks can be audited")
            at_ms = _after(now_ms, updated_ms)
            audits = json.loads(
                conn.execute("SELECT audits FROM tasks WHERE task_id = ?", (task_id,)).fetchone()[0] or "[]"
            )
            audits.append({**audit, "audited_at": iso_ms(at_ms)})
            conn.execute(
                "UPDATE tasks SET audits = ?, customer_review_status = ?, updated_ms = ?,"
                " response = COALESCE(?, response) WHERE task_id = ?",
                (
                    json.dumps(audits),
                    audit["audit_result"],
                    at_ms,
                    json.dumps(response) if response is not None else None,
                    task_id,
                ),
            )
            self._emit(conn, task_id, f"audit_{audit['audit_result']}", at_ms, plans)
        return self.get_task(task_id)

    def recall_task(
        self, task_id: str, *, now_ms: int, complete_at: float | None, plans: Sequence[DeliveryPlan]
    ) -> dict[str, Any]:
        """Send a completed task back to pending (response null, completed_at kept) and queue its callback.

        `complete_at` is when it completes again by itself (None: only by hand); InvalidRequestError
        unless the task is completed.
        """
        with self._transaction() as conn:
            status, updated_ms, _ = self._state(conn, task_id)
            if status != "completed":
                raise InvalidRequestError(f"Task {task_id} is {status}; only completed tasks can be recalled")
            at_ms = _after(now_ms, updated_ms)
            conn.execute(
                "UPDATE tasks SET status = 'pending', response = NULL, complete_at = ?, updated_ms = ?"
                " WHERE task_id = ?",
                (complete_at, at_ms, task_id),
            )
            self._emit(conn, task_id, "recalled", at_ms, plans)
        return self.get_task(task_id)

    def backdate_task(self, task_id: str, account: str, *, created_ms: int) -> dict[str, Any]:
        """Move a task's created_at back (time made to pass): InvalidRequestError if it would move forward.

        updated_at moves with it while the task was never changed after creation, so it never
        precedes created_at.
        """
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT account, created_ms, updated_ms, body FROM tasks WHERE task_id = ?", (task_id,)
            ).fetchone()
            if row is None or row[0] != account:
                raise TaskNotFoundError(f"No task with id {task_id}")
            old_ms, updated_ms, body = row[1], row[2], json.loads(row[3])
            if created_ms > old_ms:
                raise InvalidRequestError(
                    f"Invalid parameter 'created_at': it can only move back, before {iso_ms(old_ms)}"
                )
            body["created_at"] = iso_ms(created_ms)
            conn.execute(
                "UPDATE tasks SET created_ms = ?, body = ?, updated_ms = ? WHERE task_id = ?",
                (created_ms, json.dumps(body), created_ms if updated_ms == old_ms else updated_ms, task_id),
            )
        return self.get_task(task_id)

    def due_completions(self, now: float, limit: int = 20) -> list[DueCompletion]:
        """Pending tasks whose completion time has come, oldest due first."""
        rows = self._query(
            f"SELECT {_TASK_COLUMNS}, faults FROM tasks WHERE complete_at IS NOT NULL AND complete_at <= ?"
            " AND status = 'pending' ORDER BY complete_at, created_ms, task_id LIMIT ?",
            (now, limit),
        )
        return [DueCompletion(_view(row), json.loads(row[_N])) for row in rows]

    def list_tasks(self, account: str, query: ListQuery) -> tuple[list[dict[str, Any]], int, int]:
        """One page of the account's tasks, newest first: (docs, total matching, offset of the page)."""
        where = ["account = ?"]
        args: list[Any] = [account]
        for column, op, value in (
            ("created_ms", ">=", query.start_ms),
            ("created_ms", "<=", query.end_ms),
            ("completed_ms", ">=", query.completed_after_ms),
            ("completed_ms", "<=", query.completed_before_ms),
            ("updated_ms", ">=", query.updated_after_ms),
            ("updated_ms", "<=", query.updated_before_ms),
            ("status", "=", query.status),
            ("type", "=", query.type),
            ("project", "=", query.project),
            ("batch", "=", query.batch),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        if query.customer_review_status:
            wanted = list(query.customer_review_status)
            marks = ", ".join("?" * len(wanted))
            # Scale's `pending` review status: a task nobody has audited yet.
            unaudited = " OR customer_review_status IS NULL" if "pending" in wanted else ""
            where.append(f"(customer_review_status IN ({marks}){unaudited})")
            args.extend(wanted)
        if query.unique_id:
            where.append(f"unique_id IN ({', '.join('?' * len(query.unique_id))})")
            args.extend(query.unique_id)
        if query.tags:
            marks = ", ".join("?" * len(query.tags))
            where.append(f"EXISTS (SELECT 1 FROM json_each(tasks.tags) WHERE json_each.value IN ({marks}))")
            args.extend(query.tags)
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

    def due_deliveries(self, now: float, exclude: set[int], limit: int = 50) -> list[CallbackCopy]:
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
                self._conn.execute("SELECT MIN(held_since) FROM deliveries WHERE state = 'held'").fetchone()[0],
            ]
            if times[1] is not None:
                times[1] += hold_limit
            rows = self._conn.execute(
                "SELECT id, next_attempt_at FROM deliveries WHERE state = 'pending' ORDER BY next_attempt_at LIMIT ?",
                (len(exclude) + 1,),
            ).fetchall()
        times.append(next((at for ident, at in rows if ident not in exclude), None))
        found = [t for t in times if t is not None]
        return min(found) if found else None

    def release_held(self, *, now: float, except_task: str | None = None, held_before: float | None = None) -> int:
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
        delivery: CallbackCopy,
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
                for row in conn.execute(
                    "SELECT state FROM deliveries WHERE task_id = ? AND event_id IS ?",
                    (delivery.task_id, delivery.event_id),
                )
            }
            # true on any 200; false only once no copy is left that could still get one.
            outcome: bool | None = None
            if "succeeded" in states:
                outcome = True
            elif "failed" in states and not states & {"pending", "held"}:
                outcome = False
            latest = conn.execute("SELECT MAX(id) FROM events WHERE task_id = ?", (delivery.task_id,)).fetchone()[0]
            # callback_succeeded tells about the task's latest event; an older event's late outcome is logged only.
            if outcome is not None and latest == delivery.event_id:
                conn.execute(
                    "UPDATE tasks SET callback_succeeded = ? WHERE task_id = ?",
                    (int(outcome), delivery.task_id),
                )
            return outcome

    def events(self, task_id: str) -> list[tuple[str, bytes]]:
        """The task's events in order: (name, the callback body recorded for it)."""
        rows = self._query("SELECT name, body FROM events WHERE task_id = ? ORDER BY id", (task_id,))
        return [(name, bytes(body)) for name, body in rows]

    def delivery_body(self, delivery: CallbackCopy) -> bytes:
        """The bytes one delivery POSTs: its event's body, recorded when the event happened.

        A delivery queued by a version-1 simulator has no event: it carries the task as it is now,
        as version 1 sent it.
        """
        if delivery.event_id is not None:
            rows = self._query("SELECT body FROM events WHERE id = ?", (delivery.event_id,))
            if rows:
                body: bytes = rows[0][0]
                return bytes(body)
        return callback_body(self.callback_task(delivery.task_id))

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
                    "event": row[6] or "completed",
                    "event_at": iso_ms(row[7]) if row[7] is not None else None,
                }
                for row in self._conn.execute(
                    "SELECT d.copy, d.state, d.attempts, d.next_attempt_at, d.wrong_key, d.url, e.name, e.at_ms"
                    " FROM deliveries d LEFT JOIN events e ON e.id = d.event_id"
                    " WHERE d.task_id = ? ORDER BY d.id",
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
