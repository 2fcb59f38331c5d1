"""Prepared statements: a Core statement compiled once, executed on the DBAPI cursor.

Why: a certificate's issuance runs three statements (the reservation INSERT, the CA status
read, the ``mark_issued`` UPDATE). Through ``Connection.execute`` each cost 20-50 us of
SQLAlchemy machinery here (cache key, execution context, parameter processing, result
set-up) around 3-40 us of SQLite work. A :class:`Prepared` statement is compiled once per
dialect; executing it converts the parameters with the bind processors SQLAlchemy itself
uses for the statement (``UtcDateTime``, ``JSON``, ``Boolean``, ...; from the public
``dialect_impl(dialect).bind_processor(dialect)``, looked up once per statement and
dialect) and runs the SQL on a cursor of the Connection's own DBAPI connection, so it takes
part in the Connection's transaction exactly like ``conn.execute`` would (a Connection not
yet in a transaction begins one, as SQLAlchemy's autobegin does).
tests/storage/test_storage_prepared.py holds the stored values to those of
``conn.execute``.

Dialect-agnostic: positional paramstyles (SQLite ``qmark``) get a list in the compiled
order, named ones (psycopg ``pyformat``) a dict under the compiled (escaped) names. DBAPI
errors are wrapped as SQLAlchemy does (``sqlite3.IntegrityError`` ->
:class:`sqlalchemy.exc.IntegrityError` with ``.orig``), so callers catch the same
exceptions as on the ``conn.execute`` path; a disconnect invalidates the Connection.

Not covered (refused when preparing): statements whose SQL depends on the parameters
(expanding ``IN`` lists, literal-execute parameters). Connection events
(``before_cursor_execute``) and echo logging are not fired for these statements.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Dialect, exc
from sqlalchemy.sql.compiler import Compiled, SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

__all__ = ["Prepared"]

_Processor = Callable[[Any], Any]
T = TypeVar("T")


class _NoDriver(Exception):  # noqa: N818 - never raised: stands in for a missing DBAPI's Error
    pass


class _Plan:
    """A statement compiled for one dialect: SQL, parameter order and converters."""

    __slots__ = ("dbapi_error", "dbapi_names", "defaults", "dialect", "names", "positional",
                 "processors", "result_processors", "sql")

    def __init__(self, stmt: ClauseElement, dialect: Dialect,
                 column_keys: Sequence[str] | None) -> None:
        compiled: Compiled = stmt.compile(
            dialect=dialect, column_keys=list(column_keys) if column_keys is not None else None)
        if not isinstance(compiled, SQLCompiler):
            raise TypeError(f"not a SQL statement: {stmt!r}")
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("statements with expanding or literal-execute parameters "
                             "cannot be prepared")
        self.dialect = dialect
        self.sql: str = compiled.string
        self.positional = bool(compiled.positional)
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        order = list(compiled.positiontup or ()) if self.positional else list(by_name)
        escaped: Mapping[str, str] = compiled.escaped_bind_names or {}
        #: The parameter names callers use, in the DBAPI's order, and as the DBAPI sees them.
        self.names: tuple[str, ...] = tuple(order)
        self.dbapi_names: tuple[str, ...] = tuple(escaped.get(name, name) for name in order)
        #: Values of parameters bound in the statement itself (``.values(status="ISSUED")``).
        self.defaults: dict[str, Any] = {
            name: by_name[name].effective_value for name in order
            if not by_name[name].required}
        #: The bind processors SQLAlchemy itself applies (type decorators, JSON, ...).
        self.processors: tuple[tuple[int, _Processor], ...] = tuple(
            (i, proc) for i, name in enumerate(order)
            if (proc := _bind_processor(by_name[name].type, dialect)) is not None)
        self.result_processors: list[_Processor | None] | None = None
        # (A dialect created without its driver can compile, not execute.)
        dbapi = dialect.dbapi
        self.dbapi_error: type[Exception] = dbapi.Error if dbapi is not None else _NoDriver

    def args(self, params: Mapping[str, Any]) -> list[Any] | dict[str, Any]:
        """The DBAPI parameters for ``params`` (converted by the bind processors)."""
        if self.defaults:
            params = {**self.defaults, **params}
        try:
            values = [params[name] for name in self.names]
        except KeyError as e:
            raise exc.InvalidRequestError(
                f"A value is required for bind parameter {e.args[0]!r}") from None
        for i, proc in self.processors:
            values[i] = proc(values[i])
        if self.positional:
            return values
        return dict(zip(self.dbapi_names, values, strict=True))


def _bind_processor(type_: Any, dialect: Dialect) -> _Processor | None:
    """The bind processor SQLAlchemy applies for ``type_`` on ``dialect`` (public API)."""
    proc: _Processor | None = type_.dialect_impl(dialect).bind_processor(dialect)
    return proc


class Prepared:
    """A Core statement compiled once per dialect and run on the DBAPI cursor directly."""

    __slots__ = ("__weakref__", "_column_keys", "_last", "_lock", "_plans", "_select_types",
                 "_stmt")

    def __init__(self, stmt: ClauseElement, *, column_keys: Sequence[str] | None = None) -> None:
        self._stmt = stmt
        self._column_keys = tuple(column_keys) if column_keys is not None else None
        # Types of the selected columns (for result processors), if it selects anything.
        selected = getattr(stmt, "selected_columns", None)
        self._select_types = [c.type for c in selected] if selected is not None else None
        self._plans: weakref.WeakKeyDictionary[Dialect, _Plan] = weakref.WeakKeyDictionary()
        self._last: _Plan | None = None  # most processes use one dialect
        self._lock = threading.Lock()

    @property
    def statement(self) -> ClauseElement:
        """The Core statement this was prepared from."""
        return self._stmt

    def plan(self, dialect: Dialect) -> _Plan:
        """The statement compiled for ``dialect`` (compiled on first use)."""
        last = self._last
        if last is not None and last.dialect is dialect:
            return last
        with self._lock:
            plan = self._plans.get(dialect)
            if plan is None:
                plan = self._plans[dialect] = _Plan(self._stmt, dialect, self._column_keys)
            self._last = plan
        return plan

    def sql(self, dialect: Dialect) -> str:
        """The SQL text sent for ``dialect``."""
        return self.plan(dialect).sql

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run once with ``params`` in ``conn``'s transaction; the DBAPI row count."""
        plan = self.plan(conn.dialect)
        args = _args(conn, plan, params)

        def run(cursor: Any) -> int:
            cursor.execute(plan.sql, args)
            rowcount: int = cursor.rowcount
            return rowcount

        return _on_cursor(conn, plan, args, run)

    def executemany(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
        """Run once per parameter set (DBAPI ``executemany``); the DBAPI row count."""
        plan = self.plan(conn.dialect)
        args = [_args(conn, plan, p) for p in rows]
        if not args:
            return 0

        def run(cursor: Any) -> int:
            cursor.executemany(plan.sql, args)
            rowcount: int = cursor.rowcount
            return rowcount

        return _on_cursor(conn, plan, args, run)

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Run a SELECT; its first row (values converted as SQLAlchemy would), or None."""
        if self._select_types is None:
            raise TypeError("first() needs a statement that selects columns")
        plan = self.plan(conn.dialect)
        args = _args(conn, plan, params)
        select_types = self._select_types

        def run(cursor: Any) -> tuple[Any, ...] | None:
            cursor.execute(plan.sql, args)
            row = cursor.fetchone()
            if row is None:
                return None
            procs = plan.result_processors
            if procs is None:
                # Result processors may depend on the driver's column type codes.
                dialect = conn.dialect
                procs = plan.result_processors = [
                    t.dialect_impl(dialect).result_processor(dialect, d[1])
                    for t, d in zip(select_types, cursor.description, strict=True)]
            return tuple(v if p is None else p(v) for p, v in zip(procs, row, strict=True))

        return _on_cursor(conn, plan, args, run)

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None if there is no row."""
        row = self.first(conn, params)
        return None if row is None else row[0]


def _args(conn: Connection, plan: _Plan, params: Mapping[str, Any]) -> Any:
    try:
        return plan.args(params)
    except Exception as e:
        # A bind processor refused a value (e.g. a naive datetime): StatementError, as
        # from conn.execute.
        raise _wrapped(conn, plan, params, e, None) from e


def _cursor(conn: Connection) -> Any:
    """A DBAPI cursor of ``conn``'s connection, in a transaction (autobegin)."""
    if not conn.in_transaction():
        conn.begin()  # what conn.execute's autobegin would do
    dbapi_connection = conn.connection.dbapi_connection
    if dbapi_connection is None:
        raise exc.ResourceClosedError("the connection is closed")
    return dbapi_connection.cursor()


def _on_cursor(conn: Connection, plan: _Plan, args: Any, run: Callable[[Any], T]) -> T:
    """``run(cursor)`` on a fresh cursor of ``conn``; DBAPI errors wrapped as SQLAlchemy's."""
    cursor = _cursor(conn)
    try:
        return run(cursor)
    except plan.dbapi_error as e:
        raise _wrapped(conn, plan, args, e, cursor) from e
    finally:
        cursor.close()


def _wrapped(conn: Connection, plan: _Plan, args: Any, error: Exception,
             cursor: Any) -> BaseException:
    """The SQLAlchemy exception for ``error``, as ``conn.execute`` would raise it."""
    dialect = conn.dialect
    disconnect = False
    if isinstance(error, plan.dbapi_error):
        try:
            disconnect = dialect.is_disconnect(
                error, conn.connection.dbapi_connection, cursor)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - best effort, the original error matters
            disconnect = False
    wrapped = exc.DBAPIError.instance(
        plan.sql, args, error, plan.dbapi_error,
        connection_invalidated=disconnect, dialect=dialect)
    if disconnect and not conn.invalidated:
        conn.invalidate(error)
    return wrapped
