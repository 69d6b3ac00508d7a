"""Whose GPU energy it is: this training's share of each visible GPU (``scope="process"``).

A GPU is billed once a process of this training's tree (DDP ranks included, other ranks
excluded) holds a context on it — it appears in NVML's compute or graphics running-process
list. Frameworks create the context lazily, after the tracker started, so the billed set is
decided from what the reads observe during the run. Until then the GPU is *pending*: its energy
is kept aside and billed when the context appears, unless another process was seen on it first
(then that energy was theirs). A GPU on which no context of ours ever appears is not billed,
and report.json says so.

While other processes use the GPU at the same time, this tree is billed its share of the
GPU's utilisation as NVML reports it per process, sampled from the thread while the sharing
lasts (:mod:`~mlflow_green.measure.meters.nvml_share`: when every process is idle, its share of
the processes holding a context); where that is not supported the GPU is billed whole and
labelled ``shared-whole``. While this tree is alone on a billed GPU, the thread lists its
processes every :data:`LIST_INTERVAL_S`, so that another job arriving mid-epoch is billed its
share from then on, not at the next window boundary. Two fallbacks when NVML's PIDs cannot be matched to ours (containers report
host PIDs): a GPU the framework says it uses (``framework-device``), else a GPU whose listed
processes all live outside this PID namespace (``unattributed``), billed whole and labelled.

Example:
    >>> Observation(frozenset({1}), frozenset()).exclusive
    True
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from mlflow_green.measure import procfs
from mlflow_green.measure.meters.nvml_energy import GpuEnergy
from mlflow_green.measure.meters.nvml_inventory import (
    NVML_ERROR_NOT_SUPPORTED,
    Target,
    describe_error,
    error_code,
)
from mlflow_green.measure.meters.nvml_share import UtilisationShare
from mlflow_green.measure.readings import join_shares

LIST_INTERVAL_S = 1.0
"""Seconds between two listings of a billed GPU's processes by the thread (alone on it, or sharing it idle)."""
UNREADABLE_LISTS_TO_BILL = 2
"""Reads in a row whose process lists fail before a GPU nothing else attributes is billed whole."""
NOT_SEEN = "no process of this training has held a context on it"
NOTHING_LISTED = (
    "NVML never listed any process on it (inside some containers it lists none): nothing shows this "
    "training used it — name the framework's GPUs (framework_gpus=) or use scope='machine'"
)


@dataclass(frozen=True)
class Observation:
    """Who holds a context on one device now: PIDs of this training's tree, and the others."""

    ours: frozenset[int]
    foreign: frozenset[int]
    error: str = ""

    @property
    def exclusive(self) -> bool:
        """This training is there alone."""
        return bool(self.ours) and not self.foreign


def observe(nvml: Any, handle: Any, our_pids: Collection[int]) -> Observation:
    """Read a device's compute and graphics running-process lists and split them into ours and others."""
    pids: set[int] = set()
    error = ""
    for function in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        try:
            pids.update(int(p.pid) for p in _processes(nvml, function, handle))
        except Exception as exc:
            if error_code(exc) != NVML_ERROR_NOT_SUPPORTED:
                error = error or describe_error(exc)
    return Observation(frozenset(pids & set(our_pids)), frozenset(pids - set(our_pids)), error)


def _processes(nvml: Any, function: str, handle: Any) -> list[Any]:
    """A running-process list; through the ``_v2`` call on drivers older than pynvml (no ``_v3``)."""
    try:
        return list(getattr(nvml, function)(handle))
    except Exception as exc:
        older = getattr(nvml, f"{function}_v2", None)
        if type(exc).__name__ != "NVMLLibraryMismatchError" or older is None:
            raise
        return list(older(handle))


def normalise_uuid(uuid: str) -> str:
    """A GPU or MIG UUID as bare lowercase hex: torch and NVML spell them differently.

    Example:
        >>> normalise_uuid("GPU-ABCD-12") == normalise_uuid("abcd-12")
        True
    """
    text = uuid.strip().lower()
    for prefix in ("gpu-", "mig-"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text


def _outside_namespace(pids: Iterable[int]) -> bool:
    """True when every PID is unknown here (NVML reports host PIDs inside many containers)."""
    pids = list(pids)
    return bool(pids) and not any(procfs.pid_exists(pid) for pid in pids)


@dataclass
class TargetBilling:
    """The energy billed for one device (a GPU or a MIG slice), as cumulative joules.

    Attributes:
        target: The device.
        source: Its physical GPU's energy.
        status: ``pending`` (no context of ours seen yet), ``billed``.
        billed_j / estimated_j: Billed energy since open, and the estimated part of it.
        bases: How it was apportioned (``mig``, ``gpu-utilisation``, ``shared-whole``, ...).
        reason: How it came to be billed, or why it is not.
    """

    target: Target
    source: GpuEnergy
    status: str = "pending"
    billed_j: float = 0.0
    estimated_j: float = 0.0
    pending_j: float = 0.0
    pending_est_j: float = 0.0
    bases: set[str] = field(default_factory=set)
    reason: str = NOT_SEEN
    share: float = 1.0
    shared: bool = False
    util: UtilisationShare = field(init=False)
    listed_s: float = float("-inf")
    first_billed_s: float | None = None
    unreadable_lists: int = 0
    processes_seen: bool = False
    _last_j: float = 0.0
    _last_est_j: float = 0.0

    def __post_init__(self) -> None:
        if self.target.fraction < 1.0:
            self.bases.add("mig")
        self.util = UtilisationShare(self.target.handle, supported=not self.target.is_mig)

    @property
    def billed(self) -> bool:
        """True once the device is billed (for the rest of the run)."""
        return self.status == "billed"

    @property
    def why(self) -> str:
        """How it came to be billed, or why it is not (for report.json)."""
        if not self.billed and self.reason == NOT_SEEN and not self.processes_seen:
            return NOTHING_LISTED
        return self.reason

    def bill_whole(self, now_s: float, reason: str, basis: str = "") -> None:
        """Bill the device from open, whole (``scope="machine"``, or a fallback)."""
        if basis:
            self.bases.add(basis)
        self._start_billing(now_s, reason)

    def _start_billing(self, now_s: float, reason: str) -> None:
        self.status = "billed"
        self.reason = reason
        self.first_billed_s = now_s
        self.billed_j += self.pending_j * self.target.fraction
        self.estimated_j += self.pending_est_j * self.target.fraction
        self.pending_j = self.pending_est_j = 0.0

    def step(self, now_s: float) -> None:
        """Take the source's energy since the last step into the bill (or keep it pending)."""
        delta_j = self.source.measured_j - self._last_j
        delta_est_j = self.source.estimated_j - self._last_est_j
        self._last_j, self._last_est_j = self.source.measured_j, self.source.estimated_j
        if self.status == "billed":
            self.billed_j += delta_j * self.target.fraction * self.share
            self.estimated_j += delta_est_j * self.target.fraction * self.share
        else:
            self.pending_j += delta_j
            self.pending_est_j += delta_est_j

    def apply(
        self,
        now_s: float,
        seen: Observation,
        nvml: Any,
        *,
        hinted: bool = False,
        fallback: bool = False,
        framework_named: bool = False,
    ) -> None:
        """Update status and share from an observation of the running processes (at a read).

        Args:
            hinted: The framework says this training uses this device.
            fallback: No context of this training was ever seen on any device: the hint and
                the PID-namespace rule may bill it.
            framework_named: The framework named its devices (then only those are billed by fallback).
        """
        if seen.error and not seen.ours and not seen.foreign:  # the lists could not be read
            self.unreadable_lists += 1
            if self.status != "billed" and fallback and self.unreadable_lists >= UNREADABLE_LISTS_TO_BILL:
                if hinted:
                    self.bill_whole(now_s, f"the framework reports using it; NVML's process lists fail ({seen.error})", "framework-device")
                elif not framework_named:
                    self.bill_whole(
                        now_s, f"NVML's running-process lists cannot be read ({seen.error}): billed whole", "unattributed"
                    )
            return  # else keep what we knew
        self.unreadable_lists = 0
        self.processes_seen = self.processes_seen or bool(seen.ours or seen.foreign)
        if self.status != "billed":
            if seen.ours:
                self.share = self._share_now(seen, nvml, now_s)
                self.pending_j *= self.share
                self.pending_est_j *= self.share
                how = "shared with other processes" if seen.foreign else "held by this training alone"
                self._start_billing(now_s, f"a process of this training holds a context on it ({how})")
            elif fallback and hinted:
                self.bill_whole(now_s, "the framework reports using it; NVML lists no PID of this training on it", "framework-device")
            elif fallback and not framework_named and seen.foreign and _outside_namespace(seen.foreign):
                self.bill_whole(
                    now_s,
                    "its processes' PIDs live outside this PID namespace (a container?) and no framework "
                    "reported its device: billed whole",
                    "unattributed",
                )
            elif seen.foreign:  # someone else's energy so far, not ours
                self.pending_j = self.pending_est_j = 0.0
            return
        if self.bases & {"framework-device", "unattributed"}:
            return
        self.share = self._share_now(seen, nvml, now_s) if (seen.ours or seen.foreign) else 1.0

    def _share_now(self, seen: Observation, nvml: Any, now_s: float) -> float:
        """This tree's share of the device over the interval just ended."""
        if not seen.foreign or not seen.ours:  # alone, or no longer there: nothing to sample
            self.shared = False
            return 1.0 if seen.ours else 0.0
        was_shared, self.shared = self.shared, True
        self.util.context_share = len(seen.ours) / (len(seen.ours) + len(seen.foreign))
        share = self.util.sample(nvml, seen.ours, now_s)
        if share is not None:
            self.bases.add("gpu-utilisation")
            return share
        if not self.util.supported:
            self.bases.add("shared-whole")
            return 1.0
        if was_shared and "gpu-utilisation" in self.bases and not self.util.idle(nvml, now_s):
            return self.share  # someone is busy, and no newer sample since the thread's last one
        self.bases.add("gpu-utilisation")  # nobody busy: split by the processes holding a context
        return self.util.context_share

    @property
    def sampling_share(self) -> bool:
        """The thread samples this device's per-process utilisation (billed, and shared now)."""
        return self.billed and self.shared and self.util.supported

    def watched(self, now_s: float) -> bool:
        """The thread lists this device's processes now: billed by its share (not by a fallback), alone
        on it or sharing it idle, and the last listing is :data:`LIST_INTERVAL_S` old."""
        return (self.billed and not self.bases & {"framework-device", "unattributed"}
                and now_s - self.listed_s >= LIST_INTERVAL_S and self.source.mode != "none")

    def poll_share(self, nvml: Any, ours: frozenset[int], now_s: float) -> None:
        """Refresh the share from the thread while the device is shared (idle: split by contexts)."""
        share = self.util.sample(nvml, ours, now_s)
        if share is not None:
            self.share = share
        elif not self.util.supported:  # refused from now on
            self.bases.add("shared-whole")
            self.share = 1.0
        elif self.util.idle(nvml, now_s):
            self.share = self.util.context_share
            if self.watched(now_s):  # who holds a context now (a process gone, or ours gone)
                self.relist(nvml, ours, now_s)

    def relist(self, nvml: Any, ours: frozenset[int], now_s: float) -> None:
        """From the thread: who holds a context now; the share from now on (a job arriving or leaving)."""
        self.listed_s = now_s
        self.apply(now_s, observe(nvml, self.target.handle, ours), nvml)

    def energy_j(self, now_s: float) -> tuple[float, float]:
        """Billed energy now and its estimated part, including a failing GPU's extrapolation."""
        provisional_j = self.source.provisional_j(now_s) * self.target.fraction * self.share
        return self.billed_j + provisional_j, self.estimated_j + provisional_j

    @property
    def share_label(self) -> str:
        """The reading's ``share``: its apportionment bases joined with ``+``."""
        return join_shares(*self.bases)
