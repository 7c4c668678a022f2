"""The project's exception and warning types, in one place.

Every error a user can trigger with bad input is a subclass of :class:`LeeError`; the CLI turns
those into a one-paragraph message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

from pathlib import Path


class LeeError(Exception):
    """Base class of every user-facing error raised by the workbench."""


class SnapshotError(LeeError):
    """A snapshot on disk is missing, malformed or inconsistent with its manifest.

    ``path`` is the file or directory at fault; ``column`` and ``id`` narrow it down when known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        column: str | None = None,
        id: object | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.column = column
        self.id = id
        where = []
        if self.path is not None:
            where.append(f"{self.path}")
        if column is not None:
            where.append(f"column '{column}'")
        if id is not None:
            where.append(f"id {id!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class SnapshotNotFoundError(SnapshotError):
    """No snapshot matches the requested variant, time or path."""


class InputError(LeeError):
    """Bad input other than a snapshot: a world directory, an array file, an argument."""


class ConfigError(LeeError):
    """A configuration value or key is invalid (unknown keys are errors, not ignored)."""


class DeviceError(LeeError):
    """The requested compute device is not available."""


class LeeWarning(UserWarning):
    """Base class of the workbench's warnings: the result is usable but the user should know."""


class FewerClustersWarning(LeeWarning):
    """K-means found fewer distinct clusters than asked for: often a sign of dimensional collapse."""


class SmallSampleWarning(LeeWarning):
    """Too few events or users for an interval to mean much (e.g. a cluster with a handful of clicks)."""


class VersionSkewWarning(LeeWarning):
    """Tables written by different model checkpoints are combined (e.g. UR of one, IR of another)."""
