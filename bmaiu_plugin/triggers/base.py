"""The trigger interface."""
from typing import Optional, Union

import numpy as np
import torch
import torch.nn as nn

from ..registry import TRIGGERS


class BaseTrigger(nn.Module):
    """A backdoor trigger stamped on a batch of images in pixel space.

    Subclasses implement :meth:`stamp_float` on a float ``(B, C, H, W)`` batch with values in
    ``[0, 255]``. :meth:`forward` accepts uint8 or float batches on any device and returns the
    same dtype; uint8 results are rounded.  A trigger is an ``nn.Module`` so its pattern moves
    with the model (``.to(device)``) and is saved with it.
    """

    def stamp_float(self, imgs: torch.Tensor,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, imgs: torch.Tensor,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Stamp the trigger on every image of ``imgs``.

        Args:
            imgs (Tensor): ``(B, C, H, W)`` or ``(C, H, W)`` images, uint8 or float in [0, 255].
            generator (torch.Generator, optional): Source of randomness for random positions,
                on the images' device.

        Returns:
            Tensor: The triggered images, same shape and dtype.
        """
        squeeze = imgs.dim() == 3
        x = imgs[None] if squeeze else imgs
        out = self.stamp_float(x.float(), generator)
        if imgs.dtype == torch.uint8:
            out = out.round_().clamp_(0, 255).to(torch.uint8)
        else:
            out = out.to(imgs.dtype)
        return out[0] if squeeze else out

    @torch.no_grad()
    def stamp_batched(self, imgs: torch.Tensor, generator: Optional[torch.Generator] = None,
                      batch_size: int = 256, device: Optional[torch.device] = None,
                      to_cpu: bool = False) -> torch.Tensor:
        """Stamp many images ``batch_size`` at a time (one ``forward`` per batch, so random
        positions are drawn batch by batch from ``generator``).

        Args:
            imgs (Tensor): ``(N, C, H, W)`` images on any device.
            generator (torch.Generator, optional): On ``device``.
            batch_size (int): Images per call.
            device (torch.device, optional): Where to stamp; the images' device by default.
            to_cpu (bool): Return the result on the CPU.
        """
        out = [self(imgs[i:i + batch_size].to(device or imgs.device), generator=generator)
               for i in range(0, len(imgs), batch_size)]
        out = torch.cat(out) if out else imgs[:0].clone()
        return out.cpu() if to_cpu else out

    def check_image_size(self, h: int, w: int) -> None:
        """Raise :class:`~bmaiu_plugin.utils.errors.ConfigValueError` if the trigger cannot be
        stamped on ``h x w`` images (a patch larger than the image, ...); any size by default."""

    @torch.no_grad()
    def apply_numpy(self, img: np.ndarray,
                    generator: Optional[torch.Generator] = None) -> np.ndarray:
        """Stamp one ``(H, W, C)`` uint8 image (the data-pipeline form)."""
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        return self(t, generator).permute(1, 2, 0).numpy()


def build_trigger(cfg: Union[dict, BaseTrigger, None]) -> Optional[BaseTrigger]:
    """Build a trigger from a config dict (or pass a built one through)."""
    if cfg is None or isinstance(cfg, BaseTrigger):
        return cfg
    return TRIGGERS.build(cfg)
