"""One row of a SELECT straight from the driver's cursor (issue 26).

``connection.execute(statement).first()`` spends about as long in SQLAlchemy as in the
database: a 46-column row of the signed-in user cost 250 µs in process on PostgreSQL, of
which the round trip and the driver took 130. The rest is SQLAlchemy's execution path,
done again for every request although nothing in it changes between two executions of the
same statement: the execution context, the result's metadata matched against the cursor's
description (which psycopg builds anew, a Python object per column, on every access) and
the ``Row``. :class:`DirectSelect` does that work once per statement and dialect, and runs
the statement on the DBAPI cursor of the SQLAlchemy connection it is given:

- the SQL is SQLAlchemy's compiled string and the parameters go through the same bind
  processors, named or positional as the dialect wants;
- each value of the row goes through the same result processor SQLAlchemy would apply (the
  column's type, as seen in the cursor's description the first time);
- the connection's ``before_cursor_execute`` and ``after_cursor_execute`` listeners are
  called as for any statement (the tests count statements and simulate lost databases
  with them), and a driver error is handed to SQLAlchemy's own handling: wrapped in
  ``sqlalchemy.exc`` and, for a lost connection, the connection invalidated;
- the row is a named tuple of the statement's column keys, with ``_mapping`` as a
  SQLAlchemy ``Row`` has.

It is for hot reads of one row whose statement is built once per process (the signed-in
user); a statement whose text depends on its parameters (``IN`` lists, ``literal_execute``,
a schema translation) is refused when it is first run.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select
from sqlalchemy.engine import Dialect


class DirectRow(tuple):  # type: ignore[type-arg]
    """Base of the row classes: a tuple with names, read as a ``sqlalchemy.Row`` is."""

    __slots__ = ()
    _fields: tuple[str, ...]

    if TYPE_CHECKING:  # the columns are attributes of each statement's row class

        def __getattr__(self, name: str) -> Any: ...

    @property
    def _mapping(self) -> Mapping[str, Any]:
        return dict(zip(self._fields, self, strict=True))


class _Compiled:
    """A statement compiled for one dialect, with what running it needs."""

    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if (
            compiled.literal_execute_params
            or compiled.post_compile_params
            or compiled.schema_translate_map
        ):
            raise ValueError("DirectSelect runs only statements whose text never changes")
        self.compiled = compiled
        self.sql = compiled.string
        self.positions = compiled.positiontup if compiled.positional else None
        self.escaped: Mapping[str, str] = compiled.escaped_bind_names or {}
        self.bind_processors: Mapping[str, Any] = compiled._bind_processors
        self.columns = compiled._result_columns
        keys = [column[0] for column in self.columns]
        base = namedtuple("Row", keys, rename=True)  # type: ignore[misc]
        self.row_type: type[DirectRow] = type("Row", (DirectRow, base), {"__slots__": ()})
        self.result_processors: list[Callable[[Any], Any] | None] | None = None

    def parameters(self, values: Mapping[str, Any]) -> Any:
        given = self.compiled.construct_params(dict(values), escape_names=False)
        processors = self.bind_processors
        processed = {
            key: processors[key](value) if key in processors else value
            for key, value in given.items()
        }
        if self.positions is not None:
            return tuple(processed[key] for key in self.positions)
        return {self.escaped.get(key, key): value for key, value in processed.items()}

    def processors(self, description: Any, dialect: Dialect) -> list[Callable[[Any], Any] | None]:
        if self.result_processors is None:
            if description is None or len(description) != len(self.columns):
                raise ValueError("the cursor's columns are not the statement's")
            self.result_processors = [
                column[3]._cached_result_processor(dialect, entry[1])
                for column, entry in zip(self.columns, description, strict=True)
            ]
        return self.result_processors


class DirectSelect:
    """A SELECT whose first row is read straight from the driver (see the module's text)."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._by_dialect: dict[Dialect, _Compiled] = {}

    def first(self, connection: Connection, values: Mapping[str, Any]) -> DirectRow | None:
        """The statement's first row on ``connection`` (in its transaction, if any)."""
        dialect = connection.dialect
        compiled = self._by_dialect.get(dialect)
        if compiled is None:
            if len(self._by_dialect) >= 8:  # an engine each (one app, or a test's apps)
                self._by_dialect.clear()
            compiled = self._by_dialect[dialect] = _Compiled(self.statement, dialect)
        sql, parameters = compiled.sql, compiled.parameters(values)
        found: Any
        fairy = connection.connection  # the pooled DBAPI connection the Connection holds
        cursor = fairy.cursor()
        try:
            events = connection._has_events or connection.engine._has_events
            if events:
                for listener in connection.dispatch.before_cursor_execute:
                    sql, parameters = listener(connection, cursor, sql, parameters, None, False)
            cursor.execute(sql, parameters)
            if events:
                for after in connection.dispatch.after_cursor_execute:
                    after(connection, cursor, sql, parameters, None, False)
            found = cursor.fetchone()
            processors = compiled.result_processors
            if processors is None:
                processors = compiled.processors(cursor.description, dialect)
        except connection.dialect.loaded_dbapi.Error as error:
            # SQLAlchemy's own handling: the error wrapped in sqlalchemy.exc, and the
            # connection invalidated if the database is gone.
            connection._handle_dbapi_exception(error, sql, parameters, cursor, None)
            raise  # not reached: the call above raises
        finally:
            cursor.close()
        if found is None:
            return None
        processed = [
            value if process is None else process(value)
            for process, value in zip(processors, found, strict=True)
        ]
        return tuple.__new__(compiled.row_type, processed)
