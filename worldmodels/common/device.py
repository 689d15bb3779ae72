"""Where a learner runs: ``runtime.device`` = ``auto`` | ``cpu`` | ``cuda`` (actors always act on the CPU).

Batches go to the device from pinned host memory with non-blocking copies, so the copy of batch k+1 can overlap the
update of batch k on a GPU; on the CPU :func:`to_device` is a no-op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worldmodels.common.checks import Choice

if TYPE_CHECKING:
    import torch


class DeviceChoice(Choice):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def resolve_device(choice: str, key: str = "runtime.device") -> torch.device:
    """The torch device for a device setting (``runtime.device`` of agents, ``run.device`` of the model trainers).

    :param key: the setting's name, for the error messages.
    :raises ValueError: ``cuda`` on a machine without one (names the fix), or an unknown choice.
    """
    import torch

    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{key}=cuda, but torch sees no CUDA device here (a CPU build of torch, or no GPU): use "
                             f"{key}=auto (falls back to the CPU) or {key}=cpu.")
        return torch.device("cuda")
    raise ValueError(f"{key}={choice!r} is not valid; choose one of auto, cpu, cuda.")


def to_device(array: object, device: torch.device) -> torch.Tensor:
    """A numpy array or tensor on ``device``: pinned and copied without blocking on CUDA, zero-copy on the CPU."""
    import torch

    tensor = torch.as_tensor(array)
    if device.type == "cpu":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)
