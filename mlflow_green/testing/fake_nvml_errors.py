"""``pynvml``-like errors for :class:`~mlflow_green.testing.FakeNVML`: one subclass per NVML return code.

As in ``pynvml`` (nvidia-ml-py), ``NVMLError(code)`` returns the subclass for that code, every
error carries the code in ``.value``, and ``str()`` is NVML's message for it. Code that handles
real NVML errors by class (``except pynvml.NVMLError_NotSupported``) or by code
(``exc.value == pynvml.NVML_ERROR_NOT_SUPPORTED``) handles these the same way.

Example:
    >>> err = NVMLError(NVML_ERROR_GPU_IS_LOST)
    >>> type(err).__name__, err.value, str(err)
    ('NVMLError_GpuIsLost', 15, 'GPU is lost')
    >>> isinstance(NVMLError_Timeout(), NVMLError)
    True
"""

from __future__ import annotations

from typing import Any

NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_NO_DATA = 21
NVML_ERROR_NOT_READY = 27
NVML_ERROR_UNKNOWN = 999

_MESSAGES: dict[int, str] = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_INSUFFICIENT_SIZE: "Insufficient Size",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_RESET_REQUIRED: "GPU requires restart",
    NVML_ERROR_NO_DATA: "No data",
    NVML_ERROR_NOT_READY: "Not Ready",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}

_BY_CODE: dict[int, type[NVMLError]] = {}


class NVMLError(Exception):
    """Base class, like ``pynvml.NVMLError``: ``NVMLError(code)`` builds the subclass for ``code``."""

    value: int = NVML_ERROR_UNKNOWN

    def __new__(cls, *args: Any) -> NVMLError:
        if cls is NVMLError and args and isinstance(args[0], int):
            cls = _BY_CODE.get(args[0], NVMLError)
        obj = Exception.__new__(cls)
        if cls is NVMLError and args and isinstance(args[0], int):
            obj.value = args[0]
        return obj

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


def _subclass(name: str, code: int) -> type[NVMLError]:
    cls = type(name, (NVMLError,), {"value": code, "__doc__": f"NVML return code {code}: {_MESSAGES[code]}."})
    cls.__module__ = __name__
    _BY_CODE[code] = cls
    return cls


NVMLError_Uninitialized = _subclass("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_InvalidArgument = _subclass("NVMLError_InvalidArgument", NVML_ERROR_INVALID_ARGUMENT)
NVMLError_NotSupported = _subclass("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _subclass("NVMLError_NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_NotFound = _subclass("NVMLError_NotFound", NVML_ERROR_NOT_FOUND)
NVMLError_InsufficientSize = _subclass("NVMLError_InsufficientSize", NVML_ERROR_INSUFFICIENT_SIZE)
NVMLError_DriverNotLoaded = _subclass("NVMLError_DriverNotLoaded", NVML_ERROR_DRIVER_NOT_LOADED)
NVMLError_Timeout = _subclass("NVMLError_Timeout", NVML_ERROR_TIMEOUT)
NVMLError_GpuIsLost = _subclass("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_ResetRequired = _subclass("NVMLError_ResetRequired", NVML_ERROR_RESET_REQUIRED)
NVMLError_NoData = _subclass("NVMLError_NoData", NVML_ERROR_NO_DATA)
NVMLError_NotReady = _subclass("NVMLError_NotReady", NVML_ERROR_NOT_READY)
NVMLError_Unknown = _subclass("NVMLError_Unknown", NVML_ERROR_UNKNOWN)

ERROR_CLASSES: dict[str, type[NVMLError]] = {cls.__name__: cls for cls in _BY_CODE.values()}
"""Every error subclass by name, for exposing them as attributes of the fake module."""

ERROR_CODES: dict[str, int] = {
    name: value for name, value in globals().items() if name.startswith("NVML_ERROR_") and isinstance(value, int)
}
"""Every ``NVML_ERROR_*`` constant by name."""
