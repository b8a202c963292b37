"""Emergence onset by frame masking (the paper, Fig. 5 and "Results").

For a video of T frames and every n in 0..T−1, the video "masked after frame
n" keeps frames 0..n and repeats frame n to the end. A model's probability
for each n is its masking curve; curve[T−1] is the unmasked prediction. The
onset frame of one model is where the curve rises most: the frame whose
inclusion raises the probability the most. The ensemble's onset is the median
over its models.

This is also what a live stream computes: at time t the rolling video holds
frames up to t, padded by repeating frame t.

The authors' code (``lower_bound = 30``) also holds the first frames fixed:
frames before ``hold`` are replaced by frame ``hold``, and n runs from
``hold`` (the curve is flat before it). The paper preset does the same.

A causal detector (:class:`training.model.EmergenceCausal`) needs no masking:
its output at frame n already depends on frames ≤ n only, so its curve is
its per-frame probability, one pass over the video, which is again what a
live stream computes.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.train import TrainedMember, as_module


def masked_videos(video: torch.Tensor, frames: torch.Tensor, hold: int = 0) -> torch.Tensor:
    """Masked copies of ``video`` (T, H, W), one per n in ``frames`` (B,): shape (B, 1, T, H, W).

    Copy b holds frames ``min(max(k, hold), frames[b])`` for k = 0..T−1 (one index gather, no per-frame
    copies): frames before ``hold`` are frame ``hold``, and every n must be ≥ ``hold``.
    """
    if len(frames) and int(frames.min()) < hold:
        raise ValueError(f"masking after frame {int(frames.min())} while the first {hold} frames are held")
    t = torch.arange(video.shape[0], device=video.device).clamp(min=hold)
    return video[torch.minimum(t[None, :], frames[:, None])].unsqueeze(1)


@torch.no_grad()
def masking_curves(model: nn.Module | TrainedMember, video_scaled: np.ndarray, device: str | torch.device = "cpu",
                   batch_size: int = 16, frames: np.ndarray | None = None, hold: int = 0) -> np.ndarray:
    """Probability of emergence for the video masked after each frame n: float32 (len(frames),).

    ``video_scaled`` is one video (T, pixels, pixels) already scaled to [0, 1]
    (:func:`common.video.scale_for_model`); ``frames`` are the n to evaluate
    (default: ``hold``..T−1, the paper's curve; a stride trades onset
    resolution for time); ``hold`` frames are held fixed (:func:`masked_videos`).
    The model runs in eval mode on ``device``, ``batch_size`` masked videos at a time; a causal model
    (one with ``frame_logits``) runs once over the video held before ``hold``.
    """
    model = as_module(model).to(device).eval()
    video = torch.as_tensor(np.asarray(video_scaled, dtype=np.float32), device=device)
    n = (torch.arange(hold, video.shape[0], device=device) if frames is None
         else torch.as_tensor(frames, device=device))
    if hasattr(model, "frame_logits"):
        held = video[torch.arange(video.shape[0], device=device).clamp(min=hold)]
        return torch.sigmoid(model.frame_logits(held[None, None])[0, n]).cpu().numpy().astype(np.float32)
    probs = [torch.sigmoid(model(masked_videos(video, n[i : i + batch_size], hold))).cpu()
             for i in range(0, len(n), batch_size)]
    return torch.cat(probs).numpy().astype(np.float32)
