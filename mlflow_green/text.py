"""Showing untrusted text (run, experiment and model names, tags) without letting it spoof the display.

Names come from whoever can write to MLflow. Control characters (C0, DEL, C1), Unicode format
characters — bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069, U+200E/F,
U+061C), zero-width characters (U+200B–U+200D, U+2060, U+FEFF) — and the line/paragraph
separators can reorder or hide what a terminal or a page shows: ``"model\\u202eLIAF"`` reads
``modelFAIL``. :func:`visible` replaces each with a visible escape (``\\u202e``, ``\\n``); all
other characters, accented letters and CJK included, are kept. The view does the same in
JavaScript (``static/green.js``), with the same character classes.

Example:
    >>> visible("digits\\u202eLIAF")
    'digits\\\\u202eLIAF'
    >>> print(visible("a\\tb\\nc\\x00d\\u200be"))
    a\\tb\\nc\\u0000d\\u200be
    >>> visible("Modèle 数字 ✓")
    'Modèle 数字 ✓'
"""

from __future__ import annotations

import unicodedata

_SHORT = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def is_hidden(char: str) -> bool:
    """Whether ``char`` is a control, format (bidi, zero-width) or line/paragraph separator character."""
    return unicodedata.category(char) in _HIDDEN_CATEGORIES


def escape_char(char: str) -> str:
    """The visible escape of one hidden character: ``\\n``, ``\\u202e``, ``\\U000e0001``."""
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def visible(text: object) -> str:
    """``text`` (or ``str(text)``) with every hidden character replaced by its visible escape."""
    text = text if isinstance(text, str) else str(text)
    if all(not is_hidden(c) for c in text):
        return text
    return "".join(escape_char(c) if is_hidden(c) else c for c in text)
