"""Where a learner runs: ``runtime.device`` = ``auto`` | ``cpu`` | ``cuda`` (actors always act on the CPU).

Batches go to the device from pinned host memory with non-blocking copies, so the copy of batch k+1 can overlap the
update of batch k on a GPU; on the CPU :func:`to_device` is a no-op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


#: Byte alignment of each array inside a :class:`StagingBuffer` (a multiple of every dtype's size, and of the
#: 16-byte vector loads of CUDA kernels).
_ALIGN = 64


class StagingBuffer:
    """Several arrays packed into one preallocated host buffer (pinned when ``device`` is CUDA) and mirrored by one
    device buffer, so that filling :attr:`host` then calling :meth:`to_device` moves all of them with a single
    host-to-device copy; :attr:`device` views the device buffer as the same arrays. On the CPU :attr:`device` views
    :attr:`host` itself (no copy at all).

    Reuse is safe by construction on CUDA: :meth:`wait_host_free` blocks until the previous copy out of :attr:`host`
    has run (call it before writing :attr:`host` again, since the host may run ahead of the GPU), and the copy waits
    for the work that :meth:`release` marked as the last reader of the device buffer.

    :param layout: name -> (shape, numpy dtype) of each array.
    :param device: where the device views live.
    """

    def __init__(self, layout: dict[str, tuple[tuple[int, ...], Any]], device: torch.device) -> None:
        import numpy as np
        import torch

        self.layout = {name: (tuple(int(d) for d in shape), np.dtype(dtype)) for name, (shape, dtype) in layout.items()}
        self.device_type = device.type
        offsets: dict[str, int] = {}
        total = 0
        for name, (shape, dtype) in self.layout.items():
            offsets[name] = total
            total += -(-int(np.prod(shape, dtype=np.int64)) * dtype.itemsize // _ALIGN) * _ALIGN
        self.nbytes = total
        cuda = device.type == "cuda"
        self._host_bytes = torch.empty(max(total, 1), dtype=torch.uint8, pin_memory=cuda)
        flat = self._host_bytes.numpy()
        self.host: dict[str, np.ndarray] = {}
        for name, (shape, dtype) in self.layout.items():
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            self.host[name] = flat[offsets[name]:offsets[name] + size].view(dtype).reshape(shape)
        self._copied: torch.cuda.Event | None = None
        self._consumed: torch.cuda.Event | None = None
        if not cuda:
            self._device_bytes = self._host_bytes
            self.device = {name: torch.from_numpy(arr) for name, arr in self.host.items()}
            return
        self._device_bytes = torch.empty(max(total, 1), dtype=torch.uint8, device=device)
        self.device = {}
        for name, (shape, dtype) in self.layout.items():
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            torch_dtype = torch.from_numpy(np.empty(0, dtype)).dtype
            self.device[name] = self._device_bytes[offsets[name]:offsets[name] + size].view(torch_dtype).view(shape)

    def fits(self, layout: dict[str, tuple[tuple[int, ...], Any]]) -> bool:
        """Whether ``layout`` is this buffer's (so it can be reused rather than allocated again)."""
        import numpy as np

        return {n: (tuple(int(d) for d in s), np.dtype(t)) for n, (s, t) in layout.items()} == self.layout

    def wait_host_free(self) -> None:
        """Block until the last :meth:`to_device` copy has read :attr:`host` (at once on the CPU)."""
        if self._copied is not None:
            self._copied.synchronize()

    def to_device(self, stream: torch.cuda.Stream | None = None) -> dict[str, torch.Tensor]:
        """Copy :attr:`host` to the device in one non-blocking copy (on ``stream``, default the current stream) and
        return the device views. A copy on another stream must be waited for with :meth:`ready` before use."""
        import torch

        if self.device_type != "cuda":
            return self.device
        stream = stream or torch.cuda.current_stream()
        with torch.cuda.stream(stream):
            if self._consumed is not None:
                stream.wait_event(self._consumed)  # the device buffer's last reader has run
            self._device_bytes.copy_(self._host_bytes, non_blocking=True)
            self._copied = torch.cuda.Event()
            self._copied.record(stream)
        return self.device

    def ready(self) -> dict[str, torch.Tensor]:
        """The device views, with the current stream made to wait for the last copy (no host sync)."""
        import torch

        if self.device_type == "cuda" and self._copied is not None:
            torch.cuda.current_stream().wait_event(self._copied)
        return self.device

    def release(self) -> None:
        """Mark the work queued so far on the current stream as the last reader of the device views: the next
        :meth:`to_device` copy waits for it."""
        import torch

        if self.device_type == "cuda":
            self._consumed = torch.cuda.Event()
            self._consumed.record(torch.cuda.current_stream())
