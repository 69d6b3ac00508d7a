"""Numbers in a rank filter that the database cannot compare, refused before the filter reaches it.

SQLite raised ``OverflowError`` and PostgreSQL ``bigint out of range`` (with the SQL statement in
the message) for a 60-digit time or a non-finite metric value; :func:`mlflow_green.rank` and
``/green/api`` both refuse them first, with a :class:`~mlflow_green.errors.RankRequestError`
naming the value.

Example:
    >>> check_filter_numbers("attributes.start_time > " + "1" * 60)
    Traceback (most recent call last):
    ...
    mlflow_green.errors.RankRequestError: Invalid filter: attributes.start_time is compared with 111111111111111111111111111111111111111111111111111111111111, which is out of range (a time in milliseconds, a 64-bit integer).
    >>> check_filter("metrics.val_accuracy > 0.9")
"""

from __future__ import annotations

import math
import sys

from mlflow_green.errors import RankRequestError

_INT64 = (-(2**63), 2**63 - 1)
_TIME_ATTRIBUTES = {"start_time", "end_time", "created", "Created"}


def check_filter(filter_string: str | None) -> None:
    """Refuse control characters (tab and newlines aside) and numbers the database cannot compare.

    Raises:
        RankRequestError: See :func:`check_filter_numbers`; or a control character such as NUL.
    """
    if not filter_string:
        return
    bad = next((c for c in filter_string if (ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127), None)
    if bad is not None:
        raise RankRequestError(f"Invalid filter: it holds the control character U+{ord(bad):04X}.")
    check_filter_numbers(filter_string)


def check_filter_numbers(filter_string: str | None) -> None:
    """Refuse numbers the database cannot compare, before the filter reaches it.

    A filter MLflow cannot parse is left to the ranking, which reports MLflow's syntax error.

    Raises:
        RankRequestError: A metric compared with a non-finite number, or a time attribute with
            a number outside 64-bit integers.
    """
    if not filter_string:
        return
    from mlflow.exceptions import MlflowException
    from mlflow.utils.search_utils import SearchUtils

    try:
        clauses = SearchUtils.parse_search_filter(filter_string)
    except MlflowException:
        return
    except Exception:  # sqlparse on hostile input: let the ranking report it as invalid
        return
    for clause in clauses:
        kind, key, value = clause.get("type"), clause.get("key"), clause.get("value")
        if kind == "metric":
            try:
                number = float(value)
            except (TypeError, ValueError, OverflowError):
                continue  # MLflow reports the syntax
            if not math.isfinite(number) or abs(number) >= sys.float_info.max:
                raise RankRequestError(
                    f"Invalid filter: metrics.{key} is compared with {str(value)[:80]}, which is not a finite number."
                )
        elif kind == "attribute" and key in _TIME_ATTRIBUTES and isinstance(value, (int, float, str)):
            if isinstance(value, str):  # MLflow 2.x's parser keeps the number as text
                try:
                    value = int(value)
                except ValueError:
                    try:
                        value = float(value)
                    except ValueError:
                        continue  # MLflow reports the syntax
            if not (_INT64[0] <= value <= _INT64[1]) or (isinstance(value, float) and not math.isfinite(value)):
                shown = str(value)[:80]
                raise RankRequestError(
                    f"Invalid filter: attributes.{key} is compared with {shown}, which is out of range "
                    "(a time in milliseconds, a 64-bit integer)."
                )


__all__ = ["check_filter", "check_filter_numbers"]
