"""Where a module's computation should run."""
from typing import Optional, Union

import torch
import torch.nn as nn


def module_device(module, device: Optional[Union[str, torch.device]] = None) -> torch.device:
    """``device`` if given, else the device of ``module``'s first parameter, else the CPU.

    Args:
        module: An ``nn.Module`` or any callable (a callable without parameters runs on the CPU).
        device (str | torch.device, optional): An explicit choice, which wins.

    Returns:
        torch.device: The device.
    """
    if device is not None:
        return torch.device(device)
    if isinstance(module, nn.Module):
        p = next(iter(module.parameters()), None)
        if p is not None:
            return p.device
    return torch.device('cpu')
