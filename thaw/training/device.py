"""Device, precision and memory format for a run."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Placement:
    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    pin_memory: bool
    use_scaler: bool

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def choose_placement(precision: str, convolutional: bool, device: str | None = None) -> Placement:
    """CUDA when present: bf16 autocast where supported, channels_last for conv nets,
    pinned memory. The CPU runs fp32 unless bf16 is asked for."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    dtype: torch.dtype | None = None
    if precision == "bf16" or (precision == "auto" and cuda and torch.cuda.is_bf16_supported()):
        dtype = torch.bfloat16
    elif precision == "fp16" or (precision == "auto" and cuda):
        dtype = torch.float16
    return Placement(
        device=dev,
        autocast_dtype=dtype,
        channels_last=cuda and convolutional,
        pin_memory=cuda,
        use_scaler=cuda and dtype == torch.float16,
    )
