"""The devices of an open NVML meter: what is read at each window and each tick of the thread.

:class:`OpenGpus` holds, for every visible device, its physical GPU's energy
(:class:`~mlflow_green.measure.meters.nvml_energy.GpuEnergy`) and its bill
(:class:`~mlflow_green.measure.meters.nvml_billing.TargetBilling`); it turns them into
readings, learns update periods, samples what needs sampling, and reports every device.

Example:
    >>> from mlflow_green.testing import FakeGPU, FakeNVML
    >>> from mlflow_green.measure.meters.nvml_inventory import enumerate_gpus, visible_targets
    >>> nvml = FakeNVML([FakeGPU("GPU-a", power_w=100.0)])
    >>> nvml.nvmlInit()
    >>> targets, _ = visible_targets(enumerate_gpus(nvml)[0], None, whole_gpus=True)
    >>> gpus = OpenGpus.of(nvml, targets, Attribution("machine"), now_s=0.0, sample_interval_s=0.1)
    >>> [b.billed for b in gpus.bills]
    [True]
"""

from __future__ import annotations

import logging
from typing import Any

from mlflow_green.measure.attribution import Attribution
from mlflow_green.measure.meters.nvml_billing import LIST_INTERVAL_S, TargetBilling, normalise_uuid, observe
from mlflow_green.measure.meters.nvml_energy import PROBE_INTERVAL_S, GpuEnergy
from mlflow_green.measure.meters.nvml_inventory import Target
from mlflow_green.measure.readings import DeviceCounter

logger = logging.getLogger(__name__)

PIDS_TTL_S = 1.0
"""How long the process tree's PIDs are reused before being listed again."""
UNREADABLE = "answers neither its energy counter, its power, nor its power limit: it cannot be measured"


class OpenGpus:
    """Every visible device of an open meter (not thread-safe: the meter holds its lock).

    Args:
        nvml: The pynvml-compatible module.
        bills: One per visible device.
        attribution: Whose energy to bill.
        sample_interval_s: Seconds between samples (power-only GPUs, shares of shared GPUs).
        now_s: When the meter opened.
        meter: The meter's name, for readings.
    """

    def __init__(
        self,
        nvml: Any,
        bills: list[TargetBilling],
        attribution: Attribution,
        *,
        sample_interval_s: float,
        now_s: float,
        meter: str = "nvml",
    ) -> None:
        self.nvml = nvml
        self.bills = bills
        self.sources = list({id(b.source): b.source for b in bills}.values())
        self.attribution = attribution
        self.sample_interval_s = sample_interval_s
        self.meter = meter
        self.notes: list[str] = []
        self.faults: list[str] = []
        self._next_sample_s = {id(s): now_s + sample_interval_s for s in self.sources}
        self._pids: tuple[float, frozenset[int]] = (float("-inf"), frozenset())
        self._ours_seen = False
        for bill in bills:
            if bill.source.mode == "none":
                bill.reason = UNREADABLE
                self.faults.append(f"GPU {bill.target.uuid} {UNREADABLE}")
            elif attribution.scope == "machine":
                bill.bill_whole(now_s, "scope=machine: every visible device is billed whole")

    @classmethod
    def of(cls, nvml: Any, targets: list[Target], attribution: Attribution, *, now_s: float, sample_interval_s: float) -> OpenGpus:
        """Open every target: one energy source per physical GPU, one bill per device."""
        sources: dict[int, GpuEnergy] = {}
        bills = []
        for target in targets:
            source = sources.get(target.gpu.index)
            if source is None:
                source = sources[target.gpu.index] = GpuEnergy(nvml, target.gpu.handle, target.gpu.uuid, now_s)
            bills.append(TargetBilling(target, source))
            if attribution.scope == "process":
                bills[-1].util.skip_earlier_samples(nvml)
        return cls(nvml, bills, attribution, sample_interval_s=sample_interval_s, now_s=now_s)

    @property
    def readable(self) -> bool:
        """True when at least one device can be measured."""
        return any(b.source.mode != "none" for b in self.bills)

    @property
    def poll_interval_s(self) -> float | None:
        """The thread's period now: fast while learning update periods, else only while needed."""
        if any(s.probing for s in self.sources):
            return PROBE_INTERVAL_S
        if any(s.needs_sampling for s in self.sources) or any(b.sampling_share for b in self.bills):
            return self.sample_interval_s
        if self.attribution.scope == "process" and any(b.watched(float("inf")) for b in self.bills):
            return LIST_INTERVAL_S  # alone on a GPU: another job may arrive mid-epoch
        return None

    def _our_pids(self, now_s: float) -> frozenset[int]:
        seen_s, pids = self._pids
        if now_s - seen_s >= PIDS_TTL_S or not pids:
            pids_of = getattr(self.attribution.processes, "pids", None)
            pids = frozenset(pids_of()) if callable(pids_of) else frozenset()
            self._pids = (now_s, pids)
        return pids

    def _hinted(self) -> set[str]:
        """Normalised UUIDs of the devices the framework says it uses (asked only when needed)."""
        ask = self.attribution.framework_gpus
        if ask is None:
            return set()
        try:
            return {normalise_uuid(str(u)) for u in ask() if u}
        except Exception as exc:
            logger.debug("NVML: the framework could not say which GPUs it uses: %s", exc)
            return set()

    def poll(self, now_s: float) -> None:
        """From the thread: learn update periods, sample power, sample shares of shared GPUs."""
        updated: set[int] = set()
        for source in self.sources:
            source.probe(now_s)
            shared = any(b.source is source and b.sampling_share for b in self.bills)
            due_s = self._next_sample_s[id(source)]
            if (source.needs_sampling or shared) and now_s >= due_s - 0.5 * self.sample_interval_s:
                # on a fixed grid: a thread that wakes a little late or early keeps the rate
                self._next_sample_s[id(source)] = max(due_s + self.sample_interval_s, now_s)
                source.update(now_s, from_thread=True)
                updated.add(id(source))
        for bill in self.bills:
            if id(bill.source) in updated:
                if bill.sampling_share:
                    bill.poll_share(self.nvml, self._our_pids(now_s), now_s)
                bill.step(now_s)
            elif self.attribution.scope == "process" and not bill.shared and bill.watched(now_s):
                bill.source.update(now_s, from_thread=True)  # what ran alone is billed at the old share
                for same in self.bills:
                    if same.source is bill.source:
                        same.step(now_s)
                bill.relist(self.nvml, self._our_pids(now_s), now_s)

    def read(self, now_s: float) -> tuple[DeviceCounter, ...]:
        """Every billed device's cumulative energy now (at a window boundary)."""
        for source in self.sources:
            source.update(now_s)
        for bill in self.bills:
            bill.step(now_s)
        if self.attribution.scope == "process":
            self._observe(now_s)
        return tuple(self._reading(b, now_s) for b in self.bills if b.billed)

    def _observe(self, now_s: float) -> None:
        """Who holds a context on each device now; bill the ones this training uses."""
        pids = self._our_pids(now_s)
        seen = {id(b): observe(self.nvml, b.target.handle, pids) for b in self.bills if b.source.mode != "none"}
        self._ours_seen = self._ours_seen or any(s.ours for s in seen.values())
        fallback = not self._ours_seen  # NVML's PIDs never matched ours (yet): a container?
        hints = self._hinted() if fallback and any(not b.billed for b in self.bills) else set()
        for bill in self.bills:
            if id(bill) in seen:
                hinted = normalise_uuid(bill.target.uuid) in hints
                bill.apply(now_s, seen[id(bill)], self.nvml, hinted=hinted, fallback=fallback, framework_named=bool(hints))

    def _reading(self, bill: TargetBilling, now_s: float) -> DeviceCounter:
        energy_j, estimated_j = bill.energy_j(now_s)
        source = bill.source
        notes = [source.failing, source.model if source.mode == "estimate" else "", bill.target.fraction_how]
        if bill.bases & {"framework-device", "unattributed", "shared-whole"}:
            notes.append(bill.reason)
        return DeviceCounter(
            device_id=bill.target.device_id,
            component="gpu",
            energy_j=energy_j,
            provenance=source.provenance,
            meter=self.meter,
            label=bill.target.name,
            note="; ".join(n for n in notes if n),
            scope=self.attribution.scope,
            share=bill.share_label,
            estimated_j=estimated_j,
        )

    def update_periods_s(self) -> dict[str, float]:
        """The learnt counter update period of each device measured by its counter."""
        return {
            b.target.device_id: b.source.update_period_s
            for b in self.bills
            if b.source.mode == "counter" and b.source.update_period_s
        }

    def take_faults(self) -> list[str]:
        """Device faults (failures, counter resets, unreadable devices) since the last call."""
        for source in self.sources:
            self.faults.extend(source.faults)
            source.faults.clear()
        faults, self.faults = self.faults, []
        return faults

    def report(self) -> dict[str, Any]:
        """Every visible device, billed or not and why, and how it was measured."""
        return {
            "scope": self.attribution.scope,
            "notes": list(self.notes),
            "devices": [
                {
                    "device_id": b.target.device_id,
                    "name": b.target.name,
                    "billed": b.billed,
                    "reason": b.why,
                    "share": b.share_label,
                    "fraction_of_gpu": b.target.fraction,
                    **({"fraction_how": b.target.fraction_how} if b.target.fraction_how else {}),
                    "measured_by": b.source.mode,
                    **({"model": b.source.model} if b.source.model else {}),
                    "update_period_s": b.source.update_period_s,
                    "events": list(b.source.events) + b.util.error_events(),
                }
                for b in self.bills
            ],
        }

