"""A fake live carbon-intensity provider, and a helper to register providers as a plugin.

Example:
    >>> from mlflow_green.carbon import resolve_intensity
    >>> from mlflow_green.testing import FakeIntensityProvider, registered_intensity_providers
    >>> with registered_intensity_providers(lambda: FakeIntensityProvider({"FRA": 42.0})):
    ...     resolve_intensity("fr", provider="fake").intensity_g_per_kwh
    42.0
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

from mlflow_green.carbon import WORLD, CarbonIntensity, IntensityProvider
from mlflow_green.errors import GreenError, UnknownRegionError
from mlflow_green.testing.plugin import registered_plugin


class FakeIntensityProvider(IntensityProvider):
    """A provider answering fixed intensities, or failing on demand. It never goes online.

    Args:
        intensity_g_per_kwh: One value for every region, or region code -> g/kWh (codes as
            mlflow-green passes them: canonical, e.g. ``"FRA"``; ``"WORLD"`` for no region).
            A region missing from the mapping raises :class:`UnknownRegionError`.
        name: Provider name (as used in ``intensity_provider=``).
        fail: Raise this exception (or a :class:`GreenError` with this message) on every call.
        source: The ``source`` of the answers.

    Attributes:
        calls: The regions asked for, in order.

    Example:
        >>> p = FakeIntensityProvider(300.0, name="grid")
        >>> p.intensity("DEU").method, p.intensity(None).region, p.calls
        ('grid', 'WORLD', ['DEU', None])
    """

    name: ClassVar[str] = "fake"

    def __init__(
        self,
        intensity_g_per_kwh: float | Mapping[str, float] = 100.0,
        *,
        name: str = "fake",
        fail: BaseException | str | None = None,
        source: str = "fake provider for tests",
    ) -> None:
        self.name = name  # type: ignore[misc]
        self._intensity = intensity_g_per_kwh
        self._fail = fail
        self._source = source
        self.calls: list[str | None] = []

    def intensity(self, region: str | None) -> CarbonIntensity:
        self.calls.append(region)
        if self._fail is not None:
            raise self._fail if isinstance(self._fail, BaseException) else GreenError(self._fail)
        code = region or WORLD
        if isinstance(self._intensity, Mapping):
            if code not in self._intensity:
                raise UnknownRegionError(f"{self.name}: no data for region {code!r}")
            value = self._intensity[code]
        else:
            value = self._intensity
        return CarbonIntensity(code, f"{code} ({self.name})", float(value), self._source, self.name)


@contextlib.contextmanager
def registered_intensity_providers(*factories: Callable[[], IntensityProvider]) -> Iterator[Any]:
    """Register carbon-intensity provider factories as a plugin for a ``with`` block.

    This goes through the same pluggy hook a third-party package uses. A factory is an
    :class:`IntensityProvider` subclass or any zero-argument callable returning one.

    Example:
        >>> from functools import partial
        >>> from mlflow_green.plugins import intensity_provider_factories
        >>> with registered_intensity_providers(partial(FakeIntensityProvider, name="grid")):
        ...     "grid" in intensity_provider_factories()
        True
    """
    with registered_plugin("register_intensity_providers", *factories) as plugin:
        yield plugin
