"""Final-position clustering: K representative futures out of many draws, each with its probability.

Draw M > K futures, group their final positions into K clusters with k-means (SocialVAE's FPC), and
return each cluster's mean future, weighted by the cluster's share of the draws. The K futures spread over
the places the agent may end up instead of crowding its most likely one, and the weights say how likely
each is. The mean, not the member nearest the centre: it averages out the decoder's per-step noise, which
every single draw carries (chosen on validation: benchmarks/HISTORY.md). PROTOCOL.md: these are
representatives, not faithful draws, so their best-of-K is reported apart and labelled.
"""
from __future__ import annotations

import torch
from torch import Tensor


def kmeans(points: Tensor, k: int, iterations: int = 10) -> tuple[Tensor, Tensor]:
    """Batched k-means with k-means++ seeding: points (B, M, 2) -> centres (B, k, 2), labels (B, M).

    Seeding draws from torch's global generator (seed it with torch.manual_seed). A cluster left empty by
    an update keeps its previous centre.
    """
    b, m, _ = points.shape
    if not 1 <= k <= m:
        raise ValueError(f"k must be between 1 and the number of points {m}, got {k}")
    rows = torch.arange(b, device=points.device)
    centre = points.new_empty(b, k, 2)
    centre[:, 0] = points[rows, torch.randint(m, (b,), device=points.device)]
    nearest = _squared_distance(points, centre[:, :1]).squeeze(-1)  # (B, M) to the closest centre so far
    for j in range(1, k):
        # D^2 seeding by inverse CDF; where all points sit on centres the pick falls on any point.
        cdf = nearest.cumsum(-1)  # (B, M)
        u = torch.rand(b, 1, dtype=points.dtype, device=points.device) * cdf[:, -1:]
        pick = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_max(m - 1)  # (B,)
        centre[:, j] = points[rows, pick]
        nearest = torch.minimum(nearest, _squared_distance(points, centre[:, j:j + 1]).squeeze(-1))
    labels = _nearest_centre(points, centre)  # (B, M)
    for _ in range(iterations):
        total = torch.zeros_like(centre).scatter_add_(1, labels.unsqueeze(-1).expand(-1, -1, 2), points)
        ones = torch.ones_like(points[..., :1])
        count = torch.zeros_like(centre[..., :1]).scatter_add_(1, labels.unsqueeze(-1), ones)  # (B, k, 1)
        centre = torch.where(count > 0, total / count.clamp_min(1), centre)  # (B, k, 2)
        new_labels = _nearest_centre(points, centre)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return centre, labels


def _nearest_centre(points: Tensor, centres: Tensor) -> Tensor:
    """The index of each point's nearest centre: (B, M, 2), (B, k, 2) -> (B, M)."""
    return torch.cdist(points, centres).min(-1).indices  # quicker on CPU than argmin over a small last axis


def _squared_distance(points: Tensor, centres: Tensor) -> Tensor:
    """(B, M, 2), (B, k, 2) -> (B, M, k)."""
    d = points.unsqueeze(2) - centres.unsqueeze(1)  # (B, M, k, 2)
    return d[..., 0].square() + d[..., 1].square()


def cluster_futures(samples: Tensor, k: int, iterations: int = 10) -> tuple[Tensor, Tensor]:
    """K representatives of M sampled futures and the probability mass each stands for: (B, M, T, 2) ->
    futures (B, K, T, 2) and weights (B, K) summing to 1 per agent.

    The draws' final positions are clustered with `kmeans`; each cluster contributes the mean of its
    members' futures, weighted by its share of the M draws. Faithful draws give weights that estimate each
    place's probability (the share of a mode's clusters is the share of draws in that mode). A cluster with
    no members (k-means can leave one) contributes the draw nearest its centre with weight 0.
    """
    finals = samples[:, :, -1]  # (B, M, 2)
    centre, labels = kmeans(finals, k, iterations)
    member = (labels.unsqueeze(-1) == torch.arange(k, device=samples.device)).to(samples.dtype)  # (B, M, k)
    count = member.sum(1)  # (B, k)
    mean = torch.einsum("bmk,bmtc->bktc", member, samples) / count.clamp_min(1)[..., None, None]
    nearest = _squared_distance(finals, centre).argmin(1)  # (B, k): the draw nearest each centre
    fallback = samples.gather(1, nearest[..., None, None].expand(-1, -1, *samples.shape[2:]))
    futures = torch.where((count > 0)[..., None, None], mean, fallback)
    return futures, count / samples.shape[1]
