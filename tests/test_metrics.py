"""Metric functions against independent references: loops, scipy and closed forms."""
import numpy as np
import pytest
import torch
from scipy.stats import gaussian_kde

from cvae_traj.batch import TrajectoryBatch
from cvae_traj.metrics import constant_velocity, hdr_coverage, kde_nll, min_ade, min_fde


def test_min_ade_and_fde_choose_samples_separately():
    future = torch.zeros(1, 3, 2)
    offset_everywhere = torch.tensor([[1.0, 0], [1, 0], [1, 0]])  # ADE 1, FDE 1
    late_miss = torch.tensor([[0.0, 0], [0, 0], [2.5, 0]])  # ADE 0.833, FDE 2.5
    samples = torch.stack([offset_everywhere, late_miss]).unsqueeze(0)  # (1, 2, 3, 2)
    assert min_ade(samples, future).item() == pytest.approx(2.5 / 3)  # from the late miss
    assert min_fde(samples, future).item() == pytest.approx(1.0)  # from the other sample


def test_constant_velocity_uses_the_last_backward_difference():
    past = torch.tensor([[[0.0, 0.0], [5.0, 5.0], [6.0, 5.0]]])
    np.testing.assert_allclose(constant_velocity(past, 3)[0].numpy(), [[7, 5], [8, 5], [9, 5]])


def test_kde_nll_matches_scipy():
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(3, 50, 4, 2, generator=g) * torch.tensor([1.0, 0.3]) + torch.randn(3, 1, 4, 2, generator=g)
    future = torch.randn(3, 4, 2, generator=g)
    expected = np.zeros(3)
    for b in range(3):
        per_step = [max(gaussian_kde(samples[b, :, t].numpy().T).logpdf(future[b, t].numpy())[0], -20.0)
                    for t in range(4)]
        expected[b] = -np.mean(per_step)
    np.testing.assert_allclose(kde_nll(samples, future).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_kde_nll_of_gaussian_samples_approaches_the_true_nll():
    """2000 samples of N(mu, diag(s^2)) give a KDE NLL near -log N(y; mu, s^2), as the definition intends."""
    torch.manual_seed(0)
    mu, scale = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.8])
    truth = torch.distributions.Independent(torch.distributions.Normal(mu, scale), 1)
    samples = truth.sample((1, 2000, 1))  # (B=1, K, T=1, 2)
    ys = truth.sample((200,))
    kde = torch.stack([kde_nll(samples, y.view(1, 1, 2)) for y in ys]).mean()
    analytic = -truth.log_prob(ys).mean()
    # Smoothing by the kernel widens the density a little, so the KDE NLL sits slightly above the truth.
    assert analytic.item() <= kde.item() < analytic.item() + 0.05


def test_kde_nll_clips_far_misses_at_twenty_nats():
    samples = torch.randn(1, 100, 2, 2) * 0.01
    assert kde_nll(samples, torch.full((1, 2, 2), 100.0)).item() == pytest.approx(20.0)


def test_hdr_coverage_of_a_calibrated_sampler_matches_its_levels():
    torch.manual_seed(0)
    truth = torch.distributions.MultivariateNormal(torch.zeros(2), torch.tensor([[1.0, 0.6], [0.6, 0.8]]))
    samples = truth.sample((2000, 150))  # (B, K, 2): each agent's samples and its truth share a distribution
    inside = hdr_coverage(samples, truth.sample((2000,)), levels=(0.1, 0.5, 0.9))
    np.testing.assert_allclose(inside.float().mean(0).numpy(), [0.1, 0.5, 0.9], atol=0.04)
    # An overconfident sampler (too narrow) covers the truth far less often than it claims.
    narrow = hdr_coverage(samples * 0.3, truth.sample((2000,)), levels=(0.5, 0.9)).float().mean(0)
    assert (narrow < torch.tensor([0.3, 0.6])).all()


class _Windows:
    """Just what GaussianConstantVelocity.fit and evaluate_samples read of a Windows."""

    def __init__(self, past: torch.Tensor, future: torch.Tensor) -> None:
        self.past, self.future = past.numpy(), future.numpy()

    def __len__(self) -> int:
        return len(self.past)

    def batch(self, indices):
        return TrajectoryBatch.from_past(torch.from_numpy(self.past[indices]), torch.from_numpy(self.future[indices]))


def cv_plus_noise(n: int, sigma: torch.Tensor, seed: int) -> _Windows:
    """Walkers whose futures are constant velocity plus independent N(0, sigma_t^2) per axis and step."""
    g = torch.Generator().manual_seed(seed)
    velocity = torch.randn(n, 1, 2, generator=g)
    past = velocity * torch.arange(8).view(1, 8, 1)
    future = constant_velocity(past, 12) + sigma.view(1, 12, 1) * torch.randn(n, 12, 2, generator=g)
    return _Windows(past, future)


def test_calibrated_naive_baseline_fits_the_spread_and_is_calibrated_where_it_is_true():
    from cvae_traj.baselines import GaussianConstantVelocity
    from cvae_traj.evaluation import evaluate_samples

    sigma = torch.linspace(0.05, 0.6, 12)
    baseline = GaussianConstantVelocity.fit(cv_plus_noise(4000, sigma, 0), cv_plus_noise(1500, sigma, 1))
    torch.testing.assert_close(baseline.sigma, sigma, atol=0.02, rtol=0.05)
    assert baseline.factor == pytest.approx(1.0, abs=0.2)
    test = cv_plus_noise(1500, sigma, 2)
    metrics = evaluate_samples(baseline, test, kde_samples=0, calibration_samples=200)
    assert metrics["calibration_error"] < 0.03 and metrics["coverage_50"] == pytest.approx(0.5, abs=0.05)
    # Too narrow a spread misses the truth more often than its levels say: a calibration error a test can see.
    narrow = evaluate_samples(baseline.with_factor(0.4), test, kde_samples=0, calibration_samples=200)
    assert narrow["calibration_error"] > 0.2 and narrow["coverage_50"] < 0.2


def test_evaluate_likelihood_elbo_counts_the_mixture_kl_that_no_dimension_owns():
    """The negative ELBO evaluate_likelihood reports is the one validation logs: with a mixture prior its KL
    has a part outside kl_per_dim (the sampled KL beyond its closest component's per-dimension KL)."""
    import lightning as L

    from cvae_traj import SyntheticDataModule, TrajectoryCVAE
    from cvae_traj.evaluation import evaluate_likelihood

    L.seed_everything(0)
    model = TrajectoryCVAE(prior_components=3).eval()
    dm = SyntheticDataModule(num_test_agents=10)
    batch = dm.windows("test").batch(np.arange(len(dm.windows("test"))))
    metrics = evaluate_likelihood(model, dm, "test", num_importance=2, kde_samples=0, calibration_samples=0,
                                  batch_size=len(batch), seed=3)
    torch.manual_seed(3)
    with torch.no_grad():
        terms = model.cvae.elbo_terms(batch)
    assert terms["kl_rest"].abs().gt(1e-3).all()
    expected = (terms["rec_nll"] + terms["kl_per_dim"].sum(-1) + terms["kl_rest"]).mean().item()
    assert metrics["nll_elbo"] == pytest.approx(expected, rel=1e-5)
