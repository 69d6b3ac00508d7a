"""Which machine this is: a host identity that tells apart two hosts with one hostname.

Hosts are told apart wherever ranks are merged (a host's CPU and RAM are counted once per host)
and counted (``green.hosts``). A hostname alone is not unique: cloud images, containers and
clusters reuse names (``localhost``, ``worker``), and two hosts named alike would lose one
host's CPU and RAM. The identity is the hostname plus the machine id (``/etc/machine-id``, as
systemd writes it; else D-Bus's copy; else the kernel's boot id), e.g. ``gpu-node/3d1219c7c4c5``.

Example:
    >>> host_identity("node", "3d1219c7c4c5404aaa1f6d2a48adfda4")
    'node/3d1219c7c4c5'
    >>> host_identity("node", "")
    'node'
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path

MACHINE_ID_PATHS: tuple[str, ...] = ("/etc/machine-id", "/var/lib/dbus/machine-id", "/proc/sys/kernel/random/boot_id")
"""Where the machine id is read, in order: systemd's, D-Bus's, then the kernel's id of this boot."""

MACHINE_ID_CHARS = 12
"""Hex digits of the machine id kept in the host identity (48 bits: collisions are negligible)."""

_HEX_RE = re.compile(r"[^0-9a-f]")


def read_machine_id(paths: Sequence[str | Path] = MACHINE_ID_PATHS) -> str:
    """The first non-empty machine id among ``paths``, as lower-case hex; ``""`` if none is readable.

    Example:
        >>> read_machine_id(["/nonexistent"])
        ''
    """
    for path in paths:
        try:
            value = _HEX_RE.sub("", Path(path).read_text(encoding="ascii", errors="replace").strip().lower())
        except OSError:
            continue
        if value and value.strip("0"):  # an all-zero id is a placeholder, not an identity
            return value
    return ""


@functools.cache
def machine_id() -> str:
    """This machine's id (see :data:`MACHINE_ID_PATHS`), cached; ``""`` when none can be read."""
    return read_machine_id()


def host_identity(hostname: str, machine: str) -> str:
    """``hostname/<first 12 hex digits of the machine id>``, or the hostname alone without an id."""
    hostname = hostname.strip() or "unknown-host"
    return f"{hostname}/{machine[:MACHINE_ID_CHARS]}" if machine else hostname


@functools.cache
def host_id() -> str:
    """This host's identity, e.g. ``gpu-node/3d1219c7c4c5`` (cached for the process)."""
    return host_identity(hostname(), machine_id())


def hostname() -> str:
    """This host's name, as ``socket.gethostname()`` gives it (``uname``: no socket import on the start path)."""
    try:
        return os.uname().nodename
    except (AttributeError, OSError):  # not POSIX
        import socket

        return socket.gethostname()


def hostname_of(identity: str) -> str:
    """The hostname part of a host identity (for display).

    Example:
        >>> hostname_of("node/3d1219c7c4c5")
        'node'
    """
    return identity.rsplit("/", 1)[0] if "/" in identity else identity
