r"""What a spool folder holds and how its files read: folders, the header, the entries, the progress.

See :mod:`mlflow_green.record.spool` for the layout and :mod:`mlflow_green.record.ops` for the
entries. Everything here only reads: a file that cannot be used is described (``SpoolFormatError``
or a reason per line), never half-used.

Example:
    >>> parse_entries(b'{"spool": 2}\n{"seq": 1, "op": "tags", "tags": {}}\n{"seq": 1, "op": "tags", "tags": {}}\n').malformed
    [(2, '{"seq": 1, "op": "tags", "tags": {}}', 'seq 1 does not follow 1')]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mlflow_green.errors import SpoolFormatError
from mlflow_green.record.ops import check_entry

ENV_SPOOL_DIR = "MLFLOW_GREEN_SPOOL_DIR"
ENV_SPOOL_FALLBACK_DIR = "MLFLOW_GREEN_SPOOL_FALLBACK_DIR"
FORMAT = 2
REJECTED_DIR = "rejected"
MALFORMED_DIR = "malformed"

_ENCODE = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def encode_entry(entry: Any) -> bytes:
    """One entry as a spool line (UTF-8 JSON and a newline); ``ValueError`` for a value JSON has no
    number for (NaN, infinity), so that nothing unreadable is kept.

    An epoch's metrics are written at every epoch, so the line is made by orjson (a fifth of the
    ``json`` module's time). orjson writes NaN and infinity as ``null``, which no entry of ours holds
    otherwise but where a report or a tag has one: a line with a ``null`` in it, or one orjson
    cannot write (an integer past 64 bits, a key that is not a string, a NumPy float), is made again by ``json``,
    which refuses the non-numbers as before. Both read back as the same values.

    Example:
        >>> encode_entry({"seq": 1, "op": "metrics", "metrics": [["green/energy_kwh", 1e-06, 5, 0]]})
        b'{"seq":1,"op":"metrics","metrics":[["green/energy_kwh",1e-6,5,0]]}\\n'
        >>> encode_entry({"seq": 2, "op": "report", "report": {"flops": None}})
        b'{"seq":2,"op":"report","report":{"flops":null}}\\n'
    """
    try:
        line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
        if b"null" not in line:
            return line
    except orjson.JSONEncodeError:
        pass
    return (_ENCODE(entry) + "\n").encode()


def default_spool_dir() -> Path:
    """Where spool files live (see the module docstring)."""
    configured = os.environ.get(ENV_SPOOL_DIR)
    if configured:
        return Path(configured)
    from mlflow_green.cache_dir import user_cache_dir

    return user_cache_dir() / "spool"  # never raises: no home folder → under the temp folder


def fallback_spool_dir() -> Path:
    """Where writes go when the spool folder cannot be written.

    ``$MLFLOW_GREEN_SPOOL_FALLBACK_DIR``, else ``<tmp>/mlflow-green-spool-<uid>``.
    """
    import tempfile

    configured = os.environ.get(ENV_SPOOL_FALLBACK_DIR)
    if configured:
        return Path(configured)
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"mlflow-green-spool-{uid}"


def canonical_uri(uri: str) -> str:
    """``uri`` as recorded and compared: relative sqlite and file paths made absolute, no trailing slash.

    Example:
        >>> canonical_uri("http://host:5000/")
        'http://host:5000'
    """
    uri = (uri or "").strip()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////") and not uri.startswith("sqlite:///:memory:"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    if uri and "://" not in uri and not uri.startswith(("file:", "databricks")):
        return Path(uri).resolve().as_uri()
    if uri.startswith(("http://", "https://")):
        scheme, _, rest = uri.partition("://")
        return f"{scheme}://{rest.rstrip('/')}"
    return uri


@dataclass
class ReadResult:
    """What a spool file holds.

    Attributes:
        entries: The well-formed entries, in order.
        malformed: ``(line number, raw line, reason)`` for each line that could not be used.
        last_t_ms: The time the last entry was written (0 if none).
    """

    entries: list[dict[str, Any]] = field(default_factory=list)
    malformed: list[tuple[int, str, str]] = field(default_factory=list)
    last_t_ms: int = 0


def parse_entries(data: bytes) -> ReadResult:
    """The entries of a spool file's content (after its header line), checked: malformed lines and
    out-of-order ``seq`` are listed apart, with the reason."""
    result = ReadResult()
    lines = data.split(b"\n")
    complete = data.endswith(b"\n")
    last_seq = 0
    for index, raw in enumerate(lines[1:], start=1):
        if not raw.strip():
            continue
        torn = index == len(lines) - 1 and not complete
        entry, reason = _parse(raw, torn)
        if reason is None and entry["seq"] <= last_seq:
            reason = f"seq {entry['seq']} does not follow {last_seq}"
        if reason is not None:
            result.malformed.append((index, raw.decode("utf-8", "backslashreplace"), reason))
            continue
        last_seq = entry["seq"]
        result.entries.append(entry)
        t_ms = entry.get("t_ms")
        if isinstance(t_ms, int) and not isinstance(t_ms, bool):
            result.last_t_ms = max(result.last_t_ms, t_ms)
    return result


def to_send(entries: list[dict[str, Any]], done_seq: int) -> list[dict[str, Any]]:
    """The entries a replay sends, in order: those after ``done_seq``, except held values, which are
    sent only if no later entry released them (their writer died holding them; see record.ops)."""
    released = {entry["releases"] for entry in entries if "releases" in entry}
    return [
        entry for entry in entries
        if (entry["seq"] not in released if entry.get("held") else entry["seq"] > done_seq)
    ]


def read_header(path: Path) -> dict[str, Any]:
    """The header of a spool file, without locking it (``SpoolFormatError`` if unreadable)."""
    return _read_header(path)


# -- internals ---------------------------------------------------------------------------------
def _parse(raw: bytes, torn: bool) -> tuple[dict[str, Any], None] | tuple[None, str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 ({exc.reason} at byte {exc.start})"
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as exc:
        if torn:
            return None, "incomplete line: the writer stopped in the middle of it"
        return None, f"not JSON ({exc.msg})"
    reason = check_entry(entry)
    return (entry, None) if reason is None else (None, reason)


def _read_header(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            first = f.readline(1 << 20)
    except OSError as exc:
        raise SpoolFormatError(f"cannot read {path.name}: {exc}") from exc
    try:
        header = json.loads(first.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SpoolFormatError("its first line is not a spool header (JSON with 'spool' and 'tracking_uri')") from None
    if not isinstance(header, dict) or header.get("spool") not in (1, FORMAT):
        raise SpoolFormatError("its first line is not a spool header (JSON with 'spool' and 'tracking_uri')")
    if not isinstance(header.get("tracking_uri", ""), str):
        raise SpoolFormatError("its header's tracking_uri is not a string")
    for key in ("run_id", "token"):
        if header.get(key) is not None and not isinstance(header[key], str):
            raise SpoolFormatError(f"its header's {key} is not a string")
    if header.get("spool") == 1:  # written by 0.1: one file per run, named after it
        header.setdefault("run_id", path.name.split(".")[0])
    if not header.get("run_id") and not header.get("token"):
        raise SpoolFormatError("its header names neither a run nor a run to create")
    return header


def read_state(state_path: Path, path: Path) -> tuple[int, str | None, set[int]]:
    """(done seq, run id, malformed lines set aside); a missing or broken state means "nothing done"."""
    try:
        state = json.loads(state_path.read_text())
        seq, run_id, aside = state.get("done_seq", 0), state.get("run_id"), state.get("aside_lines", [])
        if isinstance(seq, int) and not isinstance(seq, bool) and (run_id is None or isinstance(run_id, str)):
            return seq, run_id, {int(n) for n in aside if isinstance(n, int)}
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    try:  # 0.1 kept the last sent seq in <run_id>.done
        return int(path.with_suffix(".done").read_text().strip() or 0), None, set()
    except (OSError, ValueError):
        return 0, None, set()



def spool_paths(directory: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every ``*.jsonl`` in the spool folder (default :func:`default_spool_dir`), oldest first."""
    folder = Path(directory) if directory is not None else default_spool_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.jsonl"):
        try:
            found.append((path.lstat().st_mtime, path))
        except OSError:
            continue
    return [path for _, path in sorted(found)]


__all__ = [
    "ENV_SPOOL_DIR",
    "ENV_SPOOL_FALLBACK_DIR",
    "FORMAT",
    "MALFORMED_DIR",
    "REJECTED_DIR",
    "ReadResult",
    "canonical_uri",
    "default_spool_dir",
    "fallback_spool_dir",
    "parse_entries",
    "read_header",
    "read_state",
    "spool_paths",
    "to_send",
]
