"""How a command reports an error it cannot go on from, the same way in every command.

With ``--json`` one object ``{"error": ..., "type": ..., ...}`` on stdout (scripts read it), else
``Error: <message>`` on stderr with hidden characters made visible; then the command exits with
the status it documents.

Example:
    >>> try:
    ...     fail("no such model", "GreenError", as_json=True, exit_code=2)
    ... except SystemExit as exit:
    ...     print(exit.code)
    {
      "error": "no such model",
      "type": "GreenError"
    }
    2
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from mlflow_green.text import visible


def fail(message: str, kind: str, *, as_json: bool, exit_code: int, **details: Any) -> NoReturn:
    """Report ``message`` (an error of type ``kind``, with any ``details`` in the JSON) and exit ``exit_code``."""
    if as_json:
        click.echo(json.dumps({"error": message, "type": kind, **details}, indent=2))
    else:
        click.echo(f"Error: {visible(message)}", err=True)
    sys.exit(exit_code)
