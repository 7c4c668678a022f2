"""Choosing the compute device from the ``--device auto|cpu|cuda`` option."""

from __future__ import annotations

from typing import Literal

import torch

from lee.errors import DeviceError

DeviceChoice = Literal["auto", "cpu", "cuda"]
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(choice: str = "auto") -> torch.device:
    """Return the torch device for ``choice``.

    ``auto`` picks CUDA when a GPU is visible and the CPU otherwise; ``cuda`` without a GPU is an
    error rather than a silent fall-back, so a job that was meant to run on a GPU says so.
    """
    if choice not in DEVICE_CHOICES:
        raise DeviceError(f"--device must be one of {', '.join(DEVICE_CHOICES)}; got {choice!r}")
    if choice == "cpu":
        return torch.device("cpu")
    has_cuda = torch.cuda.is_available()
    if choice == "cuda" and not has_cuda:
        raise DeviceError(
            "--device cuda was asked for but torch sees no CUDA GPU "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); use --device cpu or auto"
        )
    return torch.device("cuda") if has_cuda else torch.device("cpu")
