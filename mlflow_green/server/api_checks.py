"""Checks on ``/green/api`` requests before anything reaches the database, and clean answers when the database fails.

- Experiments: ids (``experiment_ids=1,2``, repeatable) and names (``experiment=NAME``,
  repeatable) are de-duplicated, then capped at :data:`MAX_EXPERIMENTS` (more is a 400 naming
  the cap): 10 000 copies of one id cost one look-up, not 10 000.
- Filters (:mod:`mlflow_green.ranking.filter_checks`, shared with :func:`mlflow_green.rank`): numbers are checked before they reach SQL — a metric compared with a value that is
  not a finite float, or a time attribute (``start_time``, ``end_time``, ``created``) compared
  with a value outside 64-bit integers, is a 400 naming the value (SQLite raised
  ``OverflowError``, PostgreSQL ``bigint out of range``).
- Database errors (anything SQLAlchemy or the driver raised, wrapped by MLflow or not) never
  reach the client: :func:`database_error` finds them; the view answers a 400 with our message
  and logs the detail.

Example:
    >>> experiment_refs(["1,2", "2", " 1 "], ["digits"])
    ['1', '2', 'digits']
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mlflow_green.errors import RankRequestError

MAX_EXPERIMENTS = 100
"""Distinct experiments one ranking request may name."""
_ID = re.compile(r"[\w-]{1,128}")
_MAX_NAME_CHARS = 500


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def experiment_ids(values: Iterable[str]) -> list[str]:
    """Ids from ``experiment_ids`` values (comma-separated, repeatable), de-duplicated, in order.

    Raises:
        RankRequestError: An id with other characters than letters, digits, ``-`` and ``_``.
    """
    ids = _unique(part.strip() for value in values for part in value.split(",") if part.strip())
    bad = next((i for i in ids if not _ID.fullmatch(i)), None)
    if bad is not None:
        raise RankRequestError(f"experiment_ids must be ids such as 1,2 (letters, digits, '-', '_'), got {bad[:40]!r}.")
    return ids


def names(values: Iterable[str], what: str) -> list[str]:
    """Names, stripped and de-duplicated; each 1-500 characters, without NUL.

    Other control and bidi characters are allowed — MLflow allows them in names, and every
    surface shows them escaped (:func:`mlflow_green.text.visible`).

    Raises:
        RankRequestError: An empty or too long name, or one holding NUL.
    """
    cleaned = _unique(v.strip() for v in values)
    for name in cleaned:
        if not name or len(name) > _MAX_NAME_CHARS or "\x00" in name:
            raise RankRequestError(f"Invalid {what}: must be 1-{_MAX_NAME_CHARS} characters, without NUL.")
    return cleaned


def experiment_refs(id_values: Iterable[str], name_values: Iterable[str]) -> list[str]:
    """The experiments a request names (ids, then names), de-duplicated and at most :data:`MAX_EXPERIMENTS`.

    Raises:
        RankRequestError: None given, more than the cap, or a malformed id or name.
    """
    refs = _unique([*experiment_ids(id_values), *names(name_values, "experiment")])
    if not refs:
        raise RankRequestError("Choose experiments: experiment_ids=1,2 or experiment=NAME.")
    if len(refs) > MAX_EXPERIMENTS:
        raise RankRequestError(
            f"Too many experiments: {len(refs)} distinct ones asked, the cap is {MAX_EXPERIMENTS} per request. "
            "Rank fewer at a time."
        )
    return refs


def database_error(exc: BaseException) -> BaseException | None:
    """The database error behind ``exc`` (its cause chain), if there is one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_database_error(current):
            return current
        current = current.__cause__ or current.__context__
    return None


def _is_database_error(exc: BaseException) -> bool:
    if isinstance(exc, OverflowError):
        return True
    module = type(exc).__module__ or ""
    if module.startswith(("sqlalchemy", "psycopg", "psycopg2", "sqlite3", "pymysql", "MySQLdb", "pyodbc")):
        return True
    return any(c.__name__ in ("DatabaseError", "DBAPIError") for c in type(exc).__mro__)
