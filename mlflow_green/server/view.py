"""Placeholder: the comparison view is registered here (issue: comparison view)."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Add the /green/ view and its JSON API to ``app``."""
