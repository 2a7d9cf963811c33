"""Helpers shared by the CIFAR backbones."""
from typing import Sequence, Tuple, Union


def normalize_out_indices(indices: Union[int, Sequence[int]],
                          num_stages: int) -> Tuple[int, ...]:
    """Map stage indices (negative ones count from the end) into ``[0, num_stages)``.

    Args:
        indices (int | Sequence[int]): Requested output stages.
        num_stages (int): Number of stages of the backbone.

    Returns:
        tuple[int]: The non-negative indices, in the given order.

    Raises:
        ValueError: If an index is out of range.
    """
    if isinstance(indices, int):
        indices = (indices, )
    out = []
    for i in indices:
        j = i + num_stages if i < 0 else i
        if not 0 <= j < num_stages:
            raise ValueError(f'out index {i} is out of range for {num_stages} stages')
        out.append(j)
    return tuple(out)
