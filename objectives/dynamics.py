"""Metrics for models that step a recorded time series forward (neural voltages, frame by frame).

The reference is the *constant model*: it predicts that nothing changes, ``x(t+k) = x(t)``. A model
is worth something only by how far it beats that; the flyvis log reports every run as
"Improvement vs Constant" = ``1 - loss / constant_model_loss`` (seeds/003_47ed67130df93812.txt,
"sweep latent dimensions" onwards, whose ``val_loss_constant_model`` is this MSE on the validation
frames).

Example::

    import torch
    from objectives.dynamics import constant_model_loss, improvement_over_constant

    voltages = torch.randn(100, 8).cumsum(0)  # [time, neurons]
    baseline = constant_model_loss(voltages)
    print(improvement_over_constant(0.5 * baseline, baseline))  # 0.5
"""

from __future__ import annotations

import torch


def constant_model_loss(series: torch.Tensor, steps: int = 1) -> torch.Tensor:
    """MSE of predicting ``series[t + steps]`` by ``series[t]``, over all frames and channels (scalar)."""
    if series.shape[0] <= steps:
        raise ValueError(f"a series of {series.shape[0]} frames has no pair {steps} steps apart")
    return torch.mean((series[steps:] - series[:-steps]) ** 2)


def improvement_over_constant(loss: float | torch.Tensor, constant_loss: float | torch.Tensor) -> float | torch.Tensor:
    """``1 - loss / constant_loss``: 0 is no better than the constant model, 1 is perfect, < 0 is worse."""
    return 1 - loss / constant_loss
