"""The maths: closed-form KL, the decoder's likelihood, and the ELBO against an exact log p(y|x)."""
import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from cvae_traj import TrajectoryBatch, TrajectoryCVAE
from cvae_traj.models import IntegratedGaussian
from cvae_traj.objectives import elbo_terms, importance_weighted_bound, mixture_kl_bound


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    model = TrajectoryCVAE(latent_dim=4, prior_components=1, social=False)
    past, future = torch.randn(3, 8, 2).cumsum(1), torch.randn(3, 12, 2).cumsum(1)
    context = model.cvae.history_encoder(past)
    prior, posterior = model.cvae.prior_net(context), model.cvae.recognition_net(context, past, future)
    _, kl_per_dim, rest = elbo_terms(prior, posterior, lambda z: Independent(Normal(z, 1.0), 1), torch.zeros(3, 4))
    z = posterior.sample((200_000,))
    monte_carlo = (posterior.log_prob(z) - prior.log_prob(z)).mean(0)
    torch.testing.assert_close(kl_per_dim.sum(-1), monte_carlo, atol=0.02, rtol=0.01)
    assert rest.eq(0).all()


def test_mixture_prior_kl_is_an_upper_bound_tight_for_separated_components():
    """mixture_kl_bound, whose closest component splits a mixture prior's sampled KL by latent dimension: min_c
    KL(q || N_c) - log pi_c is never below the true KL, and equal to it up to sampling error when q sits on one
    component far from the others."""
    from torch.distributions import Categorical, MixtureSameFamily
    torch.manual_seed(0)
    q = Independent(Normal(torch.tensor([[0.3, -0.2], [1.0, 1.0], [10.1, 0.0]]),
                           torch.tensor([[0.5], [0.8], [0.3]]).expand(3, 2)), 1)
    locs = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.5, 1.5]]).expand(3, 3, 2)
    prior = MixtureSameFamily(Categorical(logits=torch.tensor([0.0, -1.0, 0.5]).expand(3, 3)),
                              Independent(Normal(locs, torch.full((3, 3, 2), 0.7)), 1))
    kl_per_dim, rest = mixture_kl_bound(q, prior)
    bound = kl_per_dim.sum(-1) + rest
    z = q.sample((400_000,))
    monte_carlo = (q.log_prob(z) - prior.log_prob(z)).mean(0)
    assert (bound >= monte_carlo - 0.01).all()
    torch.testing.assert_close(bound[2], monte_carlo[2], atol=0.01, rtol=0)  # alone on the component at (10, 0)
    weights = prior.mixture_distribution.probs[0]
    torch.testing.assert_close(rest[2], -weights[1].log())  # that component's -log pi


def test_sampled_mixture_kl_is_unbiased_and_teaches_every_component_its_share():
    """A mixture prior's KL is log q(z) - log p(z) at the z the reconstruction used. Its mean is the true KL (the
    bound sits above it where q straddles two components), and its gradient reaches the weight of every
    component in proportion to its responsibility, where the bound's reaches only the one it charges."""
    from torch.distributions import Categorical, MixtureSameFamily
    torch.manual_seed(0)
    q = Independent(Normal(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.8, 0.8]])), 1)  # between two components
    locs = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 9.0]]])
    logits = torch.zeros(1, 3, requires_grad=True)
    prior = MixtureSameFamily(Categorical(logits=logits), Independent(Normal(locs, torch.full((1, 3, 2), 0.7)), 1))
    decode = lambda z: Independent(Normal(z, 1.0), 1)  # noqa: E731

    def rep(d):  # the same q for 50,000 rows: one draw each, averaged
        return Independent(Normal(d.base_dist.loc.expand(50_000, 2), d.base_dist.scale.expand(50_000, 2)), 1)

    wide = MixtureSameFamily(Categorical(logits=logits.expand(50_000, 3)),
                             Independent(Normal(locs.expand(50_000, 3, 2), torch.full((50_000, 3, 2), 0.7)), 1))
    _, per_dim, rest = elbo_terms(wide, rep(q), decode, torch.zeros(50_000, 2))
    sampled = (per_dim.sum(-1) + rest).mean()
    z = q.sample((400_000,))
    exact = (q.log_prob(z) - prior.log_prob(z)).mean()
    per_dim_b, rest_b = mixture_kl_bound(q, prior)
    assert sampled.item() == pytest.approx(exact.item(), abs=0.02)
    assert (per_dim_b.sum(-1) + rest_b).item() > exact.item() + 0.3  # the bound charges one of the two
    sampled.backward()
    grad = logits.grad[0]
    assert grad[0] < 0 and grad[1] < 0 and grad[0] == pytest.approx(grad[1].item(), rel=0.1)  # both share q
    assert grad[2] > 0  # the far component gives its weight up


def test_integrated_gaussian_is_the_cumulative_sum_gaussian():
    """log p(positions) equals the exact Gaussian of cumulatively summed noise, and draws follow it."""
    torch.manual_seed(1)
    t = 5
    origin, loc, scale = torch.randn(2), torch.randn(t, 2), torch.rand(t, 2) + 0.1
    lower = torch.tril(torch.ones(t, t))
    dist = IntegratedGaussian(origin, loc, scale)
    y = dist.sample()
    exact = [MultivariateNormal(origin[a] + lower @ loc[:, a], scale_tril=lower * scale[:, a]) for a in range(2)]
    torch.testing.assert_close(dist.log_prob(y), sum(e.log_prob(y[:, a]) for a, e in enumerate(exact)))
    torch.testing.assert_close(dist.mean, origin + loc.cumsum(0))
    draws = dist.sample((100_000,))  # (S, T, 2): the draws' covariance is the exact one
    for a, e in enumerate(exact):
        torch.testing.assert_close(torch.cov(draws[..., a].T), e.covariance_matrix, atol=0.05, rtol=0.05)


def test_decoder_min_scale_is_the_floor_of_the_decoders_noise():
    """With the learned part of the scale pushed to nothing, every step's standard deviation is the floor: the
    density at the decoder's mean path is that of 24 normals of std decoder_min_scale at their centre, so a
    standing agent's draws can be as tight as the floor allows (and no tighter)."""
    batch = TrajectoryBatch.from_past(torch.randn(3, 8, 2).cumsum(1), torch.randn(3, 12, 2).cumsum(1))
    for floor in (0.01, 0.002):
        torch.manual_seed(0)
        model = TrajectoryCVAE(latent_dim=4, decoder_min_scale=floor)
        last = model.cvae.generation_net.net[-1][-1]  # the Linear layer that gives (loc, raw scale) per step
        with torch.no_grad():  # raw scales (every output's last two of four) at -50: softplus ~ 0
            last.weight.view(-1, 4, last.in_features)[:, 2:].zero_()
            last.bias.view(-1, 4)[:, 2:] = -50.0
            context = model.cvae.encode(batch)
            p_y = model.cvae.generation_net(context, torch.randn(3, 4), batch.past[:, -1])
            log_density = p_y.log_prob(p_y.mean)
        expected = Normal(0.0, floor).log_prob(torch.zeros(3)) * 24
        torch.testing.assert_close(log_density, expected)
    with pytest.raises(ValueError, match="decoder_min_scale"):
        TrajectoryCVAE(decoder_min_scale=0.0)


def test_decoder_broadcasts_one_context_over_several_draws_of_z():
    """K draws of z for B agents with each agent's context and origin given once (the sampling path) give the
    distribution of the same inputs expanded to (K, B, ...) and decoded as one flat batch, and the decoder's
    output is its layers' on [context, z]: its first layer splits its weight between the two, so a wrong split or
    a mixed-up agent would show."""
    torch.manual_seed(0)
    model = TrajectoryCVAE(latent_dim=4, social=False)
    context, origin, z = torch.randn(3, model.cvae.history_encoder.out_dim), torch.randn(3, 2), torch.randn(5, 3, 4)
    y = torch.randn(5, 3, 12, 2).cumsum(2)
    with torch.no_grad():
        broadcast = model.cvae.generation_net(context, z, origin)
        flat = model.cvae.generation_net(context.expand(5, 3, -1).reshape(15, -1), z.reshape(15, 4),
                                    origin.expand(5, 3, -1).reshape(15, 2))
        torch.testing.assert_close(broadcast.mean, flat.mean.view(5, 3, 12, 2))
        torch.testing.assert_close(broadcast.log_prob(y), flat.log_prob(y.view(15, 12, 2)).view(5, 3))
        # and the layers as written, on the concatenated input
        out = model.cvae.generation_net.net(torch.cat([context.expand(5, 3, -1), z], -1)).unflatten(-1, (12, 4))
        torch.testing.assert_close(broadcast.loc, out[..., :2])


def linear_gaussian(d_z=3, d_y=5, sigma=0.5, seed=0):
    """z ~ N(0, I), y | z ~ N(A z + b, sigma^2 I): log p(y) and p(z | y) are exact Gaussians."""
    g = torch.Generator().manual_seed(seed)
    a = torch.linalg.qr(torch.randn(d_y, d_z, generator=g))[0] * torch.tensor([2.0, 1.0, 0.5])  # orthogonal columns
    b = torch.randn(d_y, generator=g)
    marginal = MultivariateNormal(b, a @ a.T + sigma**2 * torch.eye(d_y))
    post_cov = torch.linalg.inv(torch.eye(d_z) + a.T @ a / sigma**2)  # diagonal, as A's columns are orthogonal

    def posterior(y):
        mean = (post_cov @ a.T @ (y - b).T / sigma**2).T
        return Independent(Normal(mean, post_cov.diagonal().sqrt().expand_as(mean)), 1)

    def decode(z):
        return Independent(Normal(z @ a.T + b, sigma), 1)

    return marginal, posterior, decode, d_z


@pytest.mark.parametrize("shift, stretch", [(0.0, 1.0), (0.7, 1.8), (-0.3, 0.6)])
def test_elbo_equals_log_likelihood_minus_posterior_gap(shift, stretch):
    """ELBO = log p(y) - KL(q || p(z|y)): exact for the true posterior, strictly below for any other q."""
    marginal, posterior, decode, d_z = linear_gaussian()
    torch.manual_seed(0)
    y = marginal.sample((4,))
    exact = marginal.log_prob(y)
    true_post = posterior(y)
    q = Independent(Normal(true_post.mean + shift, true_post.stddev * stretch), 1)
    prior = Independent(Normal(torch.zeros(4, d_z), 1.0), 1)
    s = 50_000  # Monte-Carlo average of the single-sample reconstruction term
    rep = lambda d: Independent(Normal(d.mean.repeat(s, 1), d.stddev.repeat(s, 1)), 1)  # noqa: E731
    rec, kl, _ = elbo_terms(rep(prior), rep(q), decode, y.repeat(s, 1))
    elbo = -(rec + kl.sum(-1)).view(s, 4).mean(0)
    gap = torch.distributions.kl_divergence(q, true_post)
    torch.testing.assert_close(elbo, exact - gap, atol=0.03, rtol=0)
    if shift != 0.0:
        assert (elbo < exact - 0.1).all()


def test_model_reconstruction_term_is_the_decoder_log_likelihood():
    """elbo_terms' rec_nll is -log p(y|x,z) for the z it drew: a decoder mean equal to y scores best."""
    torch.manual_seed(0)
    model = TrajectoryCVAE(latent_dim=2, social=False, heading_frame=False)
    past = torch.randn(6, 8, 2).cumsum(1)
    context = model.cvae.history_encoder(past)
    z = model.cvae.prior_net(context).sample()
    dist = model.cvae.generation_net(context, z, past[:, -1])
    at_mean = -dist.log_prob(dist.mean)
    off_mean = -dist.log_prob(dist.mean + 0.5)
    assert (at_mean < off_mean).all()
    batch = TrajectoryBatch.from_past(past, dist.mean)
    terms = model.cvae.elbo_terms(batch)
    assert terms["kl_per_dim"].shape == (6, 2) and (terms["kl_per_dim"] >= 0).all()


@pytest.mark.parametrize("anneal, step, expected", [(0, 0, 2.0), (100, 0, 0.02), (100, 49, 1.0), (100, 500, 2.0)])
def test_kl_weight_anneals_linearly(anneal, step, expected, monkeypatch):
    model = TrajectoryCVAE(beta=2.0, kl_anneal_steps=anneal)
    monkeypatch.setattr(TrajectoryCVAE, "global_step", property(lambda self: step))
    assert model.kl_weight() == pytest.approx(expected)


def test_importance_weighted_bound_sits_between_elbo_and_log_likelihood_and_converges():
    marginal, posterior, decode, d_z = linear_gaussian()
    torch.manual_seed(0)
    y = marginal.sample((3,))
    exact = marginal.log_prob(y)
    true_post = posterior(y)
    # A deliberately poor proposal, so the bounds are visibly apart.
    q = Independent(Normal(true_post.mean + 0.5, true_post.stddev * 1.5), 1)
    prior = Independent(Normal(torch.zeros(3, d_z), 1.0), 1)
    elbo = exact - torch.distributions.kl_divergence(q, true_post)  # exact ELBO of q (see above)
    def expected_bound(s):
        reps = max(50, 100_000 // s)  # average many independent estimates to see the expected bound
        rep = lambda d: Independent(Normal(d.mean.repeat(reps, 1), d.stddev.repeat(reps, 1)), 1)  # noqa: E731
        return importance_weighted_bound(rep(prior), rep(q), decode, y.repeat(reps, 1), s).view(reps, 3).mean(0)

    bounds = {s: expected_bound(s) for s in (1, 10, 100, 1000)}
    torch.testing.assert_close(bounds[1], elbo, atol=0.05, rtol=0)
    for small, large in ((1, 10), (10, 100), (100, 1000)):
        assert (bounds[small] < bounds[large] + 1e-3).all()
    assert (bounds[1000] <= exact + 1e-3).all()
    torch.testing.assert_close(bounds[1000], exact, atol=0.02, rtol=0)


def test_mixture_prior_draws_follow_the_mixture_and_train_its_components():
    """prior_draw's deterministic map from standard normal noise (one extra channel picks the component) gives
    draws distributed as the mixture: its mean and per-dimension variance, which includes the spread between
    components, so the weights must be right too. The draw is differentiable in the components' moments."""
    from cvae_traj.models.latent import PriorNet, prior_draw
    torch.manual_seed(0)
    net = PriorNet(context_dim=5, latent_dim=2, hidden_dim=16, components=3)
    torch.nn.init.normal_(net.net[2].weight, std=1.0)  # spread the components and their weights apart
    prior = net(torch.randn(2, 5))
    z = prior_draw(prior, torch.randn(400_000, 2, 3))  # (S, B, D)
    torch.testing.assert_close(z.mean(0), prior.mean, atol=0.02, rtol=0)
    torch.testing.assert_close(z.var(0), prior.variance, atol=0.05, rtol=0.02)
    weights, locs = prior.mixture_distribution.probs.unsqueeze(-1), prior.component_distribution.mean
    between = (weights * (locs - prior.mean.unsqueeze(-2)).square()).sum((-2, -1))
    assert between.gt(1.0).all()  # components apart, so the variance check also tests the weights
    z[:100].sum().backward()
    grad = net.net[2].weight.grad
    assert grad[3:].abs().sum() > 0  # the components' locations and scales (the logits come first)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`:UserWarning")
def test_mixture_prior_model_trains_and_samples_with_its_extra_noise_channel():
    batch = TrajectoryBatch.from_past(torch.randn(6, 8, 2).cumsum(1), torch.randn(6, 12, 2).cumsum(1))
    torch.manual_seed(0)
    model = TrajectoryCVAE(latent_dim=4, prior_components=3, variety_weight=3.0,
                           variety_samples=5)
    assert model.noise_dim == 5 and TrajectoryCVAE(latent_dim=4, prior_components=1).noise_dim == 4
    loss = model.training_step(batch, 0)
    loss.backward()
    logits_grad = model.cvae.prior_net.net[2].weight.grad[:3]
    assert torch.isfinite(loss) and logits_grad.abs().sum() > 0  # the weights learn through the sampled KL
    terms = model.cvae.elbo_terms(batch)
    # The negative ELBO that validation and evaluation report holds the KL no dimension owns.
    assert terms["kl_rest"].abs().gt(1e-4).all()
    torch.testing.assert_close(terms["nelbo"], terms["rec_nll"] + terms["kl_per_dim"].sum(-1) + terms["kl_rest"])
    assert model.sample(batch, num_samples=7).shape == (6, 7, 12, 2)
    with pytest.raises(ValueError, match="noise_dim"):
        model.sample_from_noise(batch, torch.randn(7, 6, 4), torch.zeros(7, 6, 12, 2))
