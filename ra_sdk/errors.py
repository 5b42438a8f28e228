"""The one small exception hierarchy of ra-sdk.

Every error says what was expected, what came, and what to do. Errors about a file
carry the file's path so that a batch run can record them as a row and go on.
"""

from __future__ import annotations

from pathlib import Path


class RaSdkError(Exception):
    """Base class of every error ra-sdk raises on purpose."""


class ConfigError(RaSdkError, ValueError):
    """A name, option or configuration value is not valid."""


class MissingDependencyError(RaSdkError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        self.package = package
        self.extra = extra
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"{package} is not installed{what}; install it with: pip install 'ra-sdk[{extra}]'"
        )


class DeviceError(RaSdkError, RuntimeError):
    """The requested device (GPU) is not usable here."""


class EngineError(RaSdkError):
    """An engine file is missing, truncated, tampered with, malformed, or built for other hardware."""


class RunnerError(RaSdkError, RuntimeError):
    """A backend failed on a batch (out of memory, a driver error): the run stops with one
    line, keeping what it finished."""


class ExportError(RaSdkError):
    """A checkpoint could not be exported (or the export failed its parity/fidelity check)."""


class CheckpointError(RaSdkError):
    """A checkpoint is missing, truncated, tampered with or not in the safe format."""


class DicomOutputError(RaSdkError):
    """A DICOM output could not be made for one study (the run records it and goes on)."""


class ReadError(RaSdkError):
    """A study or file could not be read. ``str(err)`` is one line: ``<path>: <reason>``."""

    kind = "unreadable"

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class NotAnImageError(ReadError):
    """The file is valid but holds no image (DICOM SR, RT plan, presentation state...)."""

    kind = "not-an-image"


class UnsupportedCodecError(ReadError):
    """The pixel data is compressed with a codec no installed handler decodes."""

    kind = "unsupported-codec"


class UnsupportedFormatError(ReadError):
    """The file's format or layout is not supported (e.g. a 4-D NIfTI)."""

    kind = "unsupported-format"


class CorruptFileError(ReadError):
    """The file is truncated, empty or otherwise damaged."""

    kind = "corrupt"


class NoSignalError(ReadError):
    """The study decodes but holds no usable image (constant, all NaN, or too small):
    a failure with its reason, never a normal."""

    kind = "no-signal"


class TooLargeError(ReadError):
    """The study would take more memory to decode than its share of the budget; refused
    from its header, before decoding (``--memory-budget`` raises the budget)."""

    kind = "too-large"


class AccessError(ReadError):
    """The file or folder exists but cannot be opened (permissions, not a regular file)."""

    kind = "no-access"
