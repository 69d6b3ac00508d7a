"""Which GPUs a CUDA process sees: ``CUDA_VISIBLE_DEVICES`` parsed exactly as CUDA parses it.

The rules (CUDA programming guide, "CUDA Environment Variables"; the MIG user guide; checked
against PyTorch's emulation in ``torch.cuda._parse_visible_devices``, which was written from
CUDA's observed behaviour):

- Unset: every GPU. Set but empty: none.
- A comma-separated list whose *first* entry decides its kind:
  - starts with ``GPU-``: GPU UUIDs, each the full UUID or a prefix that matches exactly one
    GPU; an entry that does not start with ``GPU-`` ends the list;
  - starts with ``MIG-``: MIG devices, as ``MIG-<uuid>`` (driver R470+) or the legacy
    ``MIG-GPU-<gpu-uuid>/<gpu-instance>/<compute-instance>``; an entry that does not start with
    ``MIG-`` ends the list. A CUDA process enumerates a single MIG device: only the first is
    visible;
  - otherwise indices, each read like C's ``strtoul`` (``1gpu`` is 1; whitespace around an
    entry is ignored); a negative or non-numeric entry, or an index past the last GPU, ends
    the list.
- The first entry that matches no device (unknown, ambiguous prefix) ends the list: only the
  devices before it are visible.
- The same device named twice makes the whole list empty: no GPU is visible.

Indices are NVML indices (PCI bus order); CUDA uses that order only with
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (its default is fastest first), so prefer UUIDs on hosts with
mixed GPU models.

Example:
    >>> gpus = ["GPU-aa11", "GPU-bb22", "GPU-cc33"]
    >>> resolve_visible(parse_visible_devices("2,0"), gpus).gpus
    (2, 0)
    >>> resolve_visible(parse_visible_devices("GPU-b,GPU-x,GPU-a"), gpus).gpus
    (1,)
    >>> resolve_visible(parse_visible_devices("0,1,0"), gpus).gpus
    ()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

ListKind = Literal["all", "index", "gpu-uuid", "mig"]


@dataclass(frozen=True)
class VisibleList:
    """``CUDA_VISIBLE_DEVICES`` parsed, before it is matched to the devices present.

    Attributes:
        kind: ``all`` (unset), ``index``, ``gpu-uuid`` or ``mig``.
        entries: The entries kept (ints for ``index``, strings otherwise).
        raw: The variable's value (None when unset).
        note: Why the list was cut short or emptied, if it was.
    """

    kind: ListKind
    entries: tuple[int | str, ...] = ()
    raw: str | None = None
    note: str = ""


@dataclass(frozen=True)
class MigRef:
    """A MIG device present on the host, as the resolver needs to see it."""

    uuid: str
    parent: int
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None


@dataclass(frozen=True)
class Visible:
    """The devices a CUDA process sees, in CUDA's order.

    Attributes:
        gpus: NVML indices of whole GPUs.
        migs: Positions in the MIG list given to :func:`resolve_visible`.
        note: Why some entries were not used (empty when every entry matched).
    """

    gpus: tuple[int, ...] = ()
    migs: tuple[int, ...] = ()
    note: str = ""


def _strtoul(entry: str) -> int:
    """The integer an entry starts with, like C's ``strtoul``; -1 when there is none."""
    text = entry.strip()
    end = 0
    while end < len(text) and (text[end].isdigit() or (end == 0 and text[end] in "+-")):
        end += 1
    try:
        return int(text[:end])
    except ValueError:
        return -1


def parse_visible_devices(value: str | None) -> VisibleList:
    """Split ``CUDA_VISIBLE_DEVICES`` into entries, as CUDA does (no device lookup yet).

    Example:
        >>> parse_visible_devices("1, 3,-1,2").entries
        (1, 3)
        >>> parse_visible_devices("GPU-a,0").entries
        ('GPU-a',)
        >>> parse_visible_devices("MIG-x,MIG-x").note
        "'MIG-x' is listed twice: CUDA then sees no GPU"
    """
    if value is None:
        return VisibleList("all")
    if value.startswith(("GPU-", "MIG-")):
        prefix = value[:4]
        kind: ListKind = "gpu-uuid" if prefix == "GPU-" else "mig"
        kept: list[int | str] = []
        for entry in value.split(","):
            if entry in kept:
                return VisibleList(kind, (), value, f"{entry!r} is listed twice: CUDA then sees no GPU")
            if not entry.startswith(prefix):
                return VisibleList(kind, tuple(kept), value, f"the list ends at {entry!r} (not a {prefix} entry)")
            kept.append(entry)
        return VisibleList(kind, tuple(kept), value)
    indices: list[int | str] = []
    for entry in value.split(","):
        index = _strtoul(entry)
        if index in indices:
            return VisibleList("index", (), value, f"index {index} is listed twice: CUDA then sees no GPU")
        if index < 0:
            note = f"the list ends at {entry!r}" if entry.strip() else ""
            return VisibleList("index", tuple(indices), value, note)
        indices.append(index)
    return VisibleList("index", tuple(indices), value)


def _unique_prefix(candidate: str, uuids: Sequence[str]) -> int | None:
    matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(candidate)]
    return matches[0] if len(matches) == 1 else None


def _resolve_mig(entry: str, gpu_uuids: Sequence[str], migs: Sequence[MigRef]) -> int | None:
    body = entry[len("MIG-"):]
    if body.startswith("GPU-") and "/" in body:  # legacy MIG-GPU-<uuid>/<gi>/<ci>
        parts = body.split("/")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        parent = _unique_prefix(parts[0], gpu_uuids)
        if parent is None:
            return None
        found = [
            i
            for i, mig in enumerate(migs)
            if mig.parent == parent
            and mig.gpu_instance_id == int(parts[1])
            and mig.compute_instance_id == int(parts[2])
        ]
        return found[0] if len(found) == 1 else None
    return _unique_prefix(entry, [m.uuid for m in migs])


def resolve_visible(
    visible: VisibleList, gpu_uuids: Sequence[str], migs: Sequence[MigRef] = ()
) -> Visible:
    """Match a parsed list to the GPUs (NVML index order) and MIG devices present.

    Args:
        visible: From :func:`parse_visible_devices`.
        gpu_uuids: The UUID of each physical GPU, by NVML index (``""`` for one that did not answer:
            it still takes its index).
        migs: The MIG devices present.
    """
    if visible.kind == "all":
        return Visible(tuple(range(len(gpu_uuids))))
    found: list[int] = []
    note = visible.note
    for entry in visible.entries:
        index: int | None
        if visible.kind == "index":
            index = int(entry) if int(entry) < len(gpu_uuids) else None
            why = f"index {entry}: only {len(gpu_uuids)} {'GPU' if len(gpu_uuids) == 1 else 'GPUs'} here"
        elif visible.kind == "gpu-uuid":
            index = _unique_prefix(str(entry), gpu_uuids)
            why = f"{entry!r} matches no GPU, or more than one"
        else:
            index = _resolve_mig(str(entry), gpu_uuids, migs)
            why = f"{entry!r} matches no MIG device, or more than one"
        if index is None:
            note = f"the list ends at {why}"
            break
        if index in found:
            return Visible(note=f"{entry!r} names a device already listed: CUDA then sees no GPU")
        found.append(index)
    if visible.kind == "mig":
        if len(found) > 1:
            note = note or f"a CUDA process enumerates one MIG device: only {visible.entries[0]!r} is visible"
        return Visible(migs=tuple(found[:1]), note=note)
    return Visible(gpus=tuple(found), note=note)
