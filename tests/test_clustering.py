"""Final-position clustering: k-means finds separated groups, and the K futures kept cover them all."""
import pytest
import torch

from cvae_traj import TrajectoryBatch, TrajectoryCVAE, predict_futures
from cvae_traj.clustering import cluster_futures, kmeans
from cvae_traj.errors import InputError
from test_predict import scene


def blobs(counts: list[int], centres: list[tuple[float, float]], spread: float = 0.05) -> torch.Tensor:
    """(1, sum(counts), 2) points: counts[i] of them around centres[i]."""
    parts = [torch.tensor(c) + spread * torch.randn(n, 2) for n, c in zip(counts, centres)]
    return torch.cat(parts).unsqueeze(0)


def futures_ending_at(finals: torch.Tensor, pred_len: int = 12) -> torch.Tensor:
    """(B, M, T, 2) straight futures from the origin to each final position (B, M, 2)."""
    fraction = torch.arange(1, pred_len + 1, dtype=finals.dtype) / pred_len
    return finals.unsqueeze(2) * fraction.view(1, 1, -1, 1)


def test_kmeans_recovers_separated_groups_of_unequal_size():
    torch.manual_seed(0)
    points = blobs([150, 30, 20], [(0.0, 0.0), (5.0, 0.0), (0.0, 5.0)]).repeat(8, 1, 1)  # (8, 200, 2)
    centres, labels = kmeans(points, 3)
    truth = torch.tensor([0] * 150 + [1] * 30 + [2] * 20)
    for b in range(8):
        # Each true group gets one label of its own, and the centre of that label is the group's mean.
        assert [len(set(labels[b, truth == g].tolist())) for g in range(3)] == [1, 1, 1]
        assert len(set(labels[b].tolist())) == 3
        for g in range(3):
            label = labels[b, truth == g][0]
            torch.testing.assert_close(centres[b, label], points[b, truth == g].mean(0))


def test_one_future_from_each_mode_however_rare():
    torch.manual_seed(1)
    # 90% of the draws end near (4, 0); two rare modes end 3 m to either side.
    finals = blobs([180, 10, 10], [(4.0, 0.0), (4.0, 3.0), (4.0, -3.0)])
    kept, weights = cluster_futures(futures_ending_at(finals), 3)
    assert kept.shape == (1, 3, 12, 2)
    assert sorted(round(y) for y in kept[0, :, -1, 1].tolist()) == [-3, 0, 3]
    # Each stands for its cluster's share of the 200 draws: the rare ones 5% each, not a third.
    by_place = {round(y): w for y, w in zip(kept[0, :, -1, 1].tolist(), weights[0].tolist())}
    assert by_place == {0: pytest.approx(0.9), 3: pytest.approx(0.05), -3: pytest.approx(0.05)}


def test_representatives_are_their_clusters_mean_futures():
    """Each representative is the mean, step by step, of the futures whose final positions share its cluster:
    the decoder's per-step noise averages out, where any single draw would carry it."""
    torch.manual_seed(2)
    finals = blobs([50, 30], [(0.0, 0.0), (6.0, 0.0)], spread=0.5)
    samples = futures_ending_at(finals) + 0.1 * torch.randn(1, 80, 12, 2)  # noisy paths
    kept, weights = cluster_futures(samples, 2)
    for rep, weight in zip(kept[0], weights[0]):
        group = (finals[0, :, 0] > 3) == (rep[-1, 0] > 3)
        torch.testing.assert_close(rep, samples[0, group].mean(0))
        assert weight.item() == pytest.approx(group.float().mean().item())
        assert not (samples[0] == rep).all(dim=(-1, -2)).any()  # not one of the draws


def test_identical_draws_leave_no_cluster_without_a_future():
    samples = torch.ones(2, 30, 12, 2)
    kept, weights = cluster_futures(samples, 5)
    assert kept.shape == (2, 5, 12, 2) and torch.equal(kept, torch.ones(2, 5, 12, 2))
    # Empty clusters still give a future, of weight 0; the weights still sum to 1.
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))


def test_model_representatives_are_cluster_means_of_its_draws_weighted_by_share():
    torch.manual_seed(3)
    model = TrajectoryCVAE(pred_len=12).eval()
    past = torch.cumsum(torch.rand(5, 8, 2), dim=1)
    torch.manual_seed(4)
    kept, weights = model.representatives(past, num_samples=4, draws=40)
    torch.manual_seed(4)
    draws = model.cvae.representative_draws(TrajectoryBatch.from_past(past), 40)
    assert kept.shape == (5, 4, 12, 2) and weights.shape == (5, 4)
    # The same noise gives the same 40 draws (component picks stratified); each of the 4 kept is the mean of the draws whose final
    # positions lie nearest its own (k-means has converged on them), weighted by their share.
    nearest = torch.cdist(draws[:, :, -1], kept[:, :, -1]).argmin(-1)  # (5, 40): each draw's representative
    for a in range(5):
        for j in range(4):
            members = nearest[a] == j
            if members.any():
                torch.testing.assert_close(kept[a, j], draws[a, members].mean(0), atol=1e-4, rtol=1e-4)
                assert weights[a, j].item() == pytest.approx(members.float().mean().item())
    # Weights are shares of the 40 draws: multiples of 1/40 that sum to 1.
    torch.testing.assert_close(weights.sum(-1), torch.ones(5))
    torch.testing.assert_close(weights * 40, (weights * 40).round())
    with pytest.raises(ValueError, match="draws must be at least num_samples"):
        model.representatives(past, num_samples=4, draws=3)
    with pytest.raises(InputError, match=r"cluster_from \(3\) must be at least num_samples \(4\)"):
        predict_futures(model, scene(), num_samples=4, cluster_from=3)
    out = predict_futures(model, scene(), num_samples=4, cluster_from=40)
    assert sorted(out["sample"].unique()) == [0, 1, 2, 3] and len(out) == 4 * 12
    # The weight column holds each representative's share, the same at every step of its future.
    per_future = out.groupby("sample")["weight"]
    assert (per_future.nunique() == 1).all() and per_future.first().sum() == pytest.approx(1.0)


def test_stratified_picks_hold_each_component_weight_to_within_two_draws():
    """The draws representatives are weighed by pick their mixture components stratified: of K draws a component
    of weight w gets w * K of them to within two, where independent picks scatter by sqrt(w (1 - w) K); and the
    shares stay unbiased, their mean over passes the weights."""
    from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

    from cvae_traj.models.latent import prior_draw, stratified_pick

    weights = torch.tensor([[0.52, 0.31, 0.17], [0.04, 0.93, 0.03]])
    locs = torch.tensor([0.0, 100.0, 200.0]).view(1, 3, 1).expand(2, 3, 1)
    prior = MixtureSameFamily(Categorical(probs=weights), Independent(Normal(locs, torch.full_like(locs, 1e-3)), 1))
    torch.manual_seed(0)

    def counts(noise):  # (passes, 2, 3): draws per component out of 40
        return torch.stack([torch.nn.functional.one_hot((prior_draw(prior, noise())[..., 0] / 100).round().long(),
                                                        3).sum(0).float() for _ in range(300)])

    stratified = counts(lambda: stratified_pick(torch.randn(40, 2, 2)))
    independent = counts(lambda: torch.randn(40, 2, 2))
    assert ((stratified - 40 * weights).abs() < 2).all()
    torch.testing.assert_close(stratified.mean(0) / 40, weights, atol=0.005, rtol=0)
    assert (independent - 40 * weights).abs().max() >= 4  # what stratifying removes
    assert stratified.std(0)[0, 0] < 0.3 * independent.std(0)[0, 0]
