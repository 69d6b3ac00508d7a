"""How device energies of several windows or several ranks combine into one device list.

Consecutive windows of one process add up per (host, device). Parallel ranks' readings of one
window are de-duplicated: a GPU by its UUID on any host, a CPU or RAM per host; two *process*
shares of one device (each rank billed its own process tree's part) add up instead.

Example:
    >>> cpu = DeviceEnergy("cpu:0", "cpu", "rapl", "counter", 10.0, 1.0, host="h")
    >>> [d.energy_j for d in merge_parallel_devices((cpu,), (cpu,))]
    [10.0]
    >>> [d.energy_j for d in combine_devices((cpu,), (cpu,), 2.0)]
    [20.0]
"""

from __future__ import annotations

from collections.abc import Iterable

from mlflow_green.measure.device_energy import DeviceEnergy, evolve
from mlflow_green.measure.provenance import join_shares, weaker


def _is_gpu_uuid(device_id: str) -> bool:
    """GPUs and MIG slices keyed by their globally unique UUID are the same device on any host."""
    return device_id.startswith(("gpu:GPU-", "gpu:MIG-"))


def _merge_key(device: DeviceEnergy) -> tuple[str, str]:
    return ("", device.device_id) if _is_gpu_uuid(device.device_id) else (device.host, device.device_id)


_PROCESS_BASES = frozenset({"cpu-time", "rss", "gpu-utilisation"})


def _process_shares(a: DeviceEnergy, b: DeviceEnergy) -> bool:
    """Two ranks' shares of one device that cover different processes, so they add up."""
    if a.scope != "process" or b.scope != "process":
        return False
    bases_a, bases_b = set(a.share.split("+")), set(b.share.split("+"))
    return bool(bases_a & _PROCESS_BASES) and bool(bases_b & _PROCESS_BASES)


def merge_parallel_devices(ours: Iterable[DeviceEnergy], theirs: Iterable[DeviceEnergy]) -> tuple[DeviceEnergy, ...]:
    """The devices of two ranks' measurements of one window, each physical device once.

    Two *process* shares of one device add up; otherwise the larger reading is kept (a whole
    device includes any share of it).
    """
    merged = {_merge_key(d): d for d in ours}
    for device in theirs:
        key = _merge_key(device)
        seen = merged.get(key)
        if seen is None:
            merged[key] = device
        elif _process_shares(seen, device):
            merged[key] = evolve(
                seen,
                energy_j=seen.energy_j + device.energy_j,
                provenance=weaker(seen.provenance, device.provenance),
                share=join_shares(seen.share, device.share),
                note=seen.note or device.note,
            )
        elif device.energy_j > seen.energy_j:
            merged[key] = device
    return tuple(merged.values())


def combine_devices(a: Iterable[DeviceEnergy], b: Iterable[DeviceEnergy], duration_s: float) -> tuple[DeviceEnergy, ...]:
    """The devices of two consecutive windows, per (host, device) energies added, over ``duration_s``."""
    merged: dict[tuple[str, str], DeviceEnergy] = {}
    for d in (*a, *b):
        key = (d.host, d.device_id)
        seen = merged.get(key)
        if seen is None:
            merged[key] = evolve(d, duration_s=duration_s)
        else:
            merged[key] = evolve(
                seen,
                energy_j=seen.energy_j + d.energy_j,
                provenance=weaker(seen.provenance, d.provenance),
                note=seen.note or d.note,
                share=join_shares(seen.share, d.share),
                scope="process" if "process" in (seen.scope, d.scope) else "machine",
            )
    return tuple(merged.values())
