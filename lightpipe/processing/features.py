"""``BatchFeature``: what feature extractors, image processors and processors return."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..keyed import KeyedDict


class BatchFeature(KeyedDict):
    """A dict of model inputs with attribute access (``features.pixel_values``) and
    ``.to(device or dtype)``, as transformers' BatchFeature: a dtype applies to floating
    tensors only, a device to every tensor; the object is updated in place and returned."""

    def to(self, *args: Any, **kwargs: Any) -> BatchFeature:
        import torch

        devices = [a for a in args if not isinstance(a, torch.dtype)]
        device = kwargs.get("device", devices[0] if devices else None)
        for key, value in list(self.items()):
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                self[key] = value.to(*args, **kwargs)
            elif isinstance(value, torch.Tensor) and device is not None:
                self[key] = value.to(device)
        return self


def to_tensors(features: dict, return_tensors: Any) -> BatchFeature:
    """Rows of equal length become one array ("np") or tensor ("pt"); None keeps lists."""
    import numpy as np

    if return_tensors in ("pt", "np"):
        for key, value in list(features.items()):
            if isinstance(value, list):
                value = np.stack(value) if value and len({len(v) for v in value}) == 1 else value
            if return_tensors == "pt" and isinstance(value, np.ndarray):
                import torch

                value = torch.from_numpy(np.ascontiguousarray(value))
            elif return_tensors == "pt" and not hasattr(value, "shape"):
                raise InputError(f"Cannot make a tensor of {key!r}: its rows differ in length. "
                                 "Pass padding=True.")
            features[key] = value
    elif return_tensors is not None:
        raise ValueError(f"return_tensors={return_tensors!r}: use 'pt', 'np' or None.")
    return BatchFeature(features)
