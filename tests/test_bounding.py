"""The probit map of a prior box (seqsbi.bounding), the amortized estimators' bound to the prior."""

import math

import pytest
import torch

from seqsbi.bounding import ProbitBoxTransform, probit_bounded

LOW, HIGH = torch.tensor([0.0, 10.0, -4.0]), torch.tensor([5.0, 1000.0, -1.4])


def test_probit_map_inverts_and_its_log_jacobian_is_autograds():
    transform = ProbitBoxTransform(LOW, HIGH)
    theta = LOW + (HIGH - LOW) * torch.rand(200, 3, dtype=torch.float64).float().clamp(0.01, 0.99)
    z = transform(theta)
    assert torch.allclose(transform.inv(z), theta, rtol=1e-4, atol=1e-4)
    for i in range(5):
        jacobian = torch.autograd.functional.jacobian(transform, theta[i])
        assert torch.allclose(transform.log_abs_det_jacobian(theta[i], z[i]), torch.log(torch.diagonal(jacobian)),
                              atol=1e-3)
    # The bounds map to finite z, and any z maps back into the box.
    assert torch.isfinite(transform(torch.stack([LOW, HIGH]))).all()
    back = transform.inv(torch.tensor([[-40.0, 0.0, 40.0]]))
    assert ((back >= LOW) & (back <= HIGH)).all()


@pytest.mark.parametrize("bounding", ["probit", "logit"])
def test_an_identity_flow_behind_the_probit_map_is_the_uniform_prior(bounding):
    """With every coupling layer at the identity (weights zeroed), the flow is its base behind the map of the box:
    the probit map gives exactly the uniform prior (log density -sum log(high - low) everywhere in the box); sbi's
    logit map gives a logit-normal, higher in the middle than the prior and lower near the bounds."""
    from sbi.neural_nets import posterior_nn
    from sbi.utils import BoxUniform

    torch.manual_seed(0)
    prior = BoxUniform(LOW, HIGH)
    builder = posterior_nn(model="zuko_nice", z_score_theta="transform_to_unconstrained", x_dist=prior,
                           hidden_features=16, num_transforms=2)
    if bounding == "probit":
        builder = probit_bounded(builder, prior)
    theta, x = prior.sample((100,)), torch.randn(100, 4)
    flow = builder(theta, x)
    with torch.no_grad():
        for parameter in flow.net.transform.transforms[1:].parameters():
            parameter.zero_()
        log_prob = flow.log_prob(theta[None], condition=x)[0]
    uniform = -float(torch.log(HIGH - LOW).sum())
    if bounding == "probit":
        assert torch.allclose(log_prob, torch.full_like(log_prob, uniform), atol=1e-3)
    else:
        assert log_prob.max() > uniform + 0.5 and log_prob.min() < uniform - 0.5
    assert math.isclose(float(flow.sample((2000,), condition=x[:1]).std(dim=0)[0, 0]),
                        5 / math.sqrt(12), rel_tol=0.1) == (bounding == "probit")


def test_the_inverse_stays_below_the_upper_bound_where_phi_rounds_to_one():
    """Phi(z) is 1.0 in float32 for z above ~5.4: the inverse keeps theta in [low, high), where the prior's density
    is positive, instead of on (or a rounding step past) the upper bound."""
    high = torch.tensor([5.0, 1000.0, -1.4])
    back = ProbitBoxTransform(LOW, high).inv(torch.tensor([[6.0, 9.0, 40.0], [-40.0, -9.0, -6.0]]))
    assert (back[0] < high).all() and (back[0] >= torch.nextafter(high, LOW)).all()
    assert (back[1] >= LOW).all()


def test_amortized_estimators_are_built_behind_the_probit_map():
    """seqsbi.amortized's settings ask for the probit map, and seqsbi.engines builds the flow with it in front; the
    estimator's method says which map."""
    import dataclasses

    from seqsbi import amortized, engines
    from test_catalogue import toy_block

    config = toy_block()
    settings = amortized.settings_for("toy", config["amortized"]["toy"], config["galaxy"])
    assert settings.bounding == "probit"
    assert amortized.method_name(settings).endswith("bounded to the prior by a probit map)")
    prior = engines.make_prior(settings.prior, "cpu")
    for bounding, kind in (("probit", ProbitBoxTransform), ("logit", torch.distributions.transforms.ComposeTransform)):
        flow = engines.network_builder(dataclasses.replace(settings, bounding=bounding), prior)(
            prior.sample((50,)), torch.randn(50, 3))
        first = flow.net.transform.transforms[0].f._transform  # sbi's CallableTransform of an IndependentTransform
        assert isinstance(first.base_transform, kind), bounding
