"""Choosing the compute device from the ``--device auto|cpu|cuda`` option."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

import torch

from lee.errors import DeviceError


class Device(StrEnum):
    """Where models run: ``auto`` (a CUDA GPU when torch sees one, else the CPU), ``cpu`` or ``cuda``."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


def resolve_device(choice: Device | str = Device.AUTO) -> torch.device:
    """Return the torch device for ``choice``.

    ``auto`` picks CUDA when a GPU is visible and the CPU otherwise; ``cuda`` without a GPU is an
    error rather than a silent fall-back, so a job that was meant to run on a GPU says so.
    """
    if choice not in tuple(Device):
        raise DeviceError(f"--device must be one of {', '.join(Device)}; got {choice!r}")
    if choice == "cpu":
        return torch.device("cpu")
    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise DeviceError(
            "--device cuda was asked for but torch sees no CUDA GPU "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); use --device cpu or auto"
        )
    return torch.device("cuda") if has_cuda else torch.device("cpu")


@contextmanager
def torch_threads(threads: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads when ``device`` is the CPU (a GPU's work is
    not bound by them), then give the caller back its own count (torch's setting is per process)."""
    before = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(max(1, int(threads)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
