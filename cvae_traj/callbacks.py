"""Training callbacks that Lightning does not ship in the form we need."""
from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import EMAWeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn


class EMA(EMAWeightAveraging):
    """Lightning's exponential moving average of the weights (validated, selected and saved in place of the
    raw weights), updated for all tensors at once: the stock callback averages tensor by tensor, which on the
    CPU costs about as much as the optimiser step for a model of many small tensors. The same average:
    ema = decay * ema + (1 - decay) * weights after every optimiser step."""

    def __init__(self, decay: float = 0.999, **kwargs: Any) -> None:
        super().__init__(decay=decay, **kwargs)
        self._kwargs.pop("avg_fn")
        self._kwargs["multi_avg_fn"] = get_ema_multi_avg_fn(decay)
        self.decay = decay
