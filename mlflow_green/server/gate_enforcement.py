"""Placeholder: server-side registry gates are installed here (issue: energy gates)."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Check alias and stage requests against the configured policy before they apply."""
