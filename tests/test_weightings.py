"""Loss weightings (issue 11, item 3): each formula against its source's, the same objective
in every target, the stated limits at lambda = +-inf, no Inf or NaN at either end (zero
terminal SNR and flow matching's t = 0 and 1 included), and parameters checked at
construction."""

import math

import pytest
import torch

import noisejump as nj
from noisejump.continuous import EDM, VPSDE, FlowMatching
from noisejump.objective import PREDICTIONS, conversion_factor, get_weighting, weighting_names
from noisejump.objective.weighting import LearnedUncertainty, Weighting, loss_weights

F64 = torch.float64
LAM = torch.linspace(-12.0, 12.0, 49, dtype=F64)
SNR = torch.exp(LAM)
FORMULAS = [name for name in weighting_names() if get_weighting(name).inspectable]


def _flow_time(lam):
    """Rectified flow's t at log-SNR lambda: sqrt(SNR) = (1 - t) / t."""
    return 1.0 / (1.0 + torch.exp(lam / 2))


# ---- each formula as its source writes it ---------------------------------------------------


def test_min_snr_is_hang_et_al_s_table_in_every_target():
    gamma = 5.0
    clipped = torch.minimum(SNR, torch.full_like(SNR, gamma))
    expected = {
        "epsilon": torch.minimum(gamma / SNR, torch.ones_like(SNR)),
        "v": clipped / (SNR + 1),
        "sample": clipped,
        "flow_velocity": clipped / (SNR.sqrt() + 1) ** 2,
    }
    weighting = get_weighting("min_snr", gamma=gamma)
    for prediction, values in expected.items():
        torch.testing.assert_close(weighting.omega(LAM, prediction), values, rtol=1e-12, atol=0)


def test_each_native_formula_is_its_source_s():
    sigma_ve = torch.exp(-LAM / 2)  # EDM's sigma at the same log-SNR
    t = _flow_time(LAM)
    cases = {
        # k-diffusion's soft-min-snr on its F-target, over c_out^2: an x0-MSE weight
        ("soft_min_snr", "sample", (("gamma", 4.0),)): 1 / (sigma_ve**2 + 0.5**2),
        ("debiased", "epsilon", ()): 1 / torch.sqrt(SNR),  # kohya-ss
        ("p2", "epsilon", (("gamma", 0.5), ("k", 1.0))): 1 / (1.0 + SNR) ** 0.5,  # Choi et al.
        ("sigma_sqrt", "sample", ()): t**-2.0,  # diffusers compute_loss_weighting_for_sd3
        ("cosmap", "sample", ()): 2 / (math.pi * (1 - 2 * t + 2 * t**2)),
        ("edm", "sample", (("sigma_data", 0.5),)): EDM(sigma_data=0.5).loss_weight(sigma_ve),
    }
    for (name, prediction, parameters), expected in cases.items():
        got = get_weighting(name, **dict(parameters)).omega(LAM, prediction)
        torch.testing.assert_close(got, expected, rtol=1e-11, atol=0, msg=name)


def test_sigma_sqrt_is_the_plain_flow_velocity_loss():
    """diffusers' default (x0 preconditioned) sigma_sqrt is weight 1 on the velocity."""
    got = get_weighting("sigma_sqrt").omega(LAM, "flow_velocity")
    torch.testing.assert_close(got, torch.ones_like(LAM), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", [n for n in FORMULAS if n != "uniform"])
def test_a_weighting_is_the_same_objective_whatever_the_target(name):
    """omega_p c_p (the weighted epsilon-MSE) is one function for every target p."""
    weighting = get_weighting(name)
    implied = [weighting.omega(LAM, p) * conversion_factor(p, LAM) for p in PREDICTIONS]
    for other in implied[1:]:
        torch.testing.assert_close(other, implied[0], rtol=1e-10, atol=0)
    # negative control: the uniform weighting is not (it weights each target's own MSE)
    uniform = get_weighting("uniform")
    assert not torch.allclose(
        uniform.omega(LAM, "sample") * conversion_factor("sample", LAM),
        uniform.omega(LAM, "epsilon") * conversion_factor("epsilon", LAM),
    )


def test_conversion_factors():
    """||target error||^2 / ||e error||^2 on a VP schedule and on rectified flow."""
    generator = torch.Generator().manual_seed(0)
    x0, e, e_hat = (torch.randn(8, generator=generator, dtype=F64) for _ in range(3))
    lam = torch.tensor(0.7, dtype=F64)
    signal, sigma = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()  # VP
    x_t = signal * x0 + sigma * e
    x0_hat = (x_t - sigma * e_hat) / signal

    def ratio(target, estimate):
        return ((target - estimate) ** 2).sum() / ((e - e_hat) ** 2).sum()

    v = signal * e - sigma * x0
    torch.testing.assert_close(ratio(x0, x0_hat), conversion_factor("sample", lam))
    torch.testing.assert_close(
        ratio(v, signal * e_hat - sigma * x0_hat), conversion_factor("v", lam)
    )
    t = _flow_time(lam)  # rectified flow at the same lambda
    x_t = (1 - t) * x0 + t * e
    x0_flow = (x_t - t * e_hat) / (1 - t)
    got = ratio(e - x0, e_hat - x0_flow)
    torch.testing.assert_close(got, conversion_factor("flow_velocity", lam))


# ---- limits at both ends -------------------------------------------------------------------


@pytest.mark.parametrize("name", FORMULAS)
def test_stated_limits_are_the_formula_s(name):
    weighting = get_weighting(name)
    far = torch.tensor([60.0, -60.0], dtype=F64)  # every weight converges like e^(-|lambda|/2)
    for prediction in PREDICTIONS:
        limits = weighting.limits(prediction)
        values = weighting.log_omega(far, prediction).exp()
        for limit, value in zip(limits, values.tolist(), strict=True):
            if limit == math.inf:
                assert value > 1e10, (prediction, limits, value)
            else:
                assert value == pytest.approx(limit, rel=1e-9, abs=1e-12), (prediction, limits)
        ends = torch.tensor([math.inf, -math.inf], dtype=F64)
        finite = [limit < math.inf for limit in limits]
        if all(finite):
            assert weighting.omega(ends, prediction).tolist() == list(limits)
        else:  # a divergent end is an error, never a silent inf
            with pytest.raises(ValueError, match="pass max_weight"):
                weighting.omega(ends, prediction)


def test_a_cap_bounds_a_divergent_end():
    weighting = get_weighting("debiased", max_weight=100.0)
    assert weighting.limits("epsilon") == (0.0, 100.0)
    values = weighting.omega(torch.tensor([-math.inf, -30.0, 0.0], dtype=F64), "epsilon")
    assert values.tolist() == [100.0, 100.0, 1.0]


SCHEDULES = {
    "zero terminal SNR": nj.get_schedule("linear", 1000, rescale_zero_terminal_snr=True),
    "flow matching": FlowMatching(),
}
ENDS = {
    "zero terminal SNR": torch.tensor([0, 998, 999]),
    "flow matching": torch.tensor([0.0, 0.5, 1.0]),
}


@pytest.mark.parametrize("schedule", SCHEDULES, ids=list(SCHEDULES))
@pytest.mark.parametrize("name", FORMULAS)
def test_weights_at_the_ends_are_finite_or_refused(name, schedule):
    schedule, t = SCHEDULES[schedule], ENDS[schedule]
    weighting = get_weighting(name)
    predictions = PREDICTIONS if schedule is SCHEDULES["flow matching"] else PREDICTIONS[:3]
    for prediction in predictions:
        plus, minus = weighting.limits(prediction)
        reach_plus = getattr(schedule, "is_flow", False)
        if (minus == math.inf) or (reach_plus and plus == math.inf):
            with pytest.raises(ValueError, match="diverges .* reaches that end"):
                weighting.weights(schedule, t, prediction)
            capped = get_weighting(name, max_weight=1e4).weights(schedule, t, prediction)
            assert torch.isfinite(capped).all() and capped.max() <= 1e4
            continue
        weights = weighting.weights(schedule, t, prediction)
        assert weights.dtype == torch.float32 and torch.isfinite(weights).all(), prediction
        last = torch.tensor(minus, dtype=torch.float32)
        assert weights[-1] == last, (prediction, weights, minus)


def test_reached_ends_of_each_family():
    from noisejump.objective.weighting import reached_ends

    assert reached_ends(nj.get_schedule("linear", 100)) == (False, False)
    assert reached_ends(SCHEDULES["zero terminal SNR"]) == (False, True)
    assert reached_ends(FlowMatching()) == (True, True)
    assert reached_ends(VPSDE()) == (True, False)
    assert reached_ends(EDM()) == (False, False)


def test_weights_match_omega_on_a_discrete_schedule_and_v_off_vp_is_exact():
    schedule = nj.get_schedule("cosine", 1000)
    t = torch.tensor([0, 10, 500, 999])
    lam = schedule.log_snr[t]
    for name in FORMULAS:
        weighting = get_weighting(name)
        for prediction in PREDICTIONS[:3]:
            expected = weighting.omega(lam, prediction).float()
            got = weighting.weights(schedule, t, prediction)
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
    # v on flow matching: c_v = (signal^2 + sigma^2)^2 / signal^2, not 1 + e^-lambda
    flow, times = FlowMatching(), torch.tensor([0.2, 0.5, 0.9], dtype=F64)
    signal, sigma = 1 - times, times
    c_v = (signal**2 + sigma**2) ** 2 / signal**2
    weighting = get_weighting("min_snr")
    epsilon = weighting.weights(flow, times, "epsilon").double()
    torch.testing.assert_close(weighting.weights(flow, times, "v").double() * c_v, epsilon)


def test_float32_overflow_is_refused_with_the_lambda():
    weighting = get_weighting("edm")  # x0-MSE weight 1 / sigma^2 + 4
    with pytest.raises(ValueError, match="edm weight for prediction 'sample' at lambda"):
        weighting.weights(EDM(), torch.tensor([1e-25, 1.0], dtype=F64), "sample")
    capped = get_weighting("edm", max_weight=1e6).weights(EDM(), torch.tensor([1e-25]), "sample")
    assert capped.item() == 1e6


def test_loss_weights_takes_a_name_or_a_weighting():
    schedule, t = nj.get_schedule("linear", 50), torch.tensor([0, 49])
    p2 = get_weighting("p2")
    torch.testing.assert_close(
        loss_weights(schedule, t, p2, 5.0, "v"), p2.weights(schedule, t, "v")
    )
    assert loss_weights(schedule, t, "uniform", 5.0, "v").tolist() == [1.0, 1.0]
    with pytest.raises(TypeError, match="learned weighting"):
        loss_weights(schedule, t, LearnedUncertainty(), 5.0, "v")


# ---- bad input --------------------------------------------------------------------------------

BAD = [
    ("min_snr", {"gamma": 0.0}, ValueError, "min_snr: gamma must be a finite number > 0"),
    ("min_snr", {"gamma": math.inf}, ValueError, "gamma must be a finite number"),
    ("min_snr", {"gamma": "5"}, ValueError, "gamma must be"),
    ("soft_min_snr", {"gamma": -1.0}, ValueError, "soft_min_snr: gamma must be"),
    ("p2", {"gamma": -0.5}, ValueError, "p2: gamma must be a finite number >= 0"),
    ("p2", {"k": 0.0}, ValueError, "p2: k must be a finite number > 0"),
    ("edm", {"sigma_data": 0.0}, ValueError, "sigma_data must be a positive finite number"),
    ("debiased", {"max_weight": 0.0}, ValueError, "debiased: max_weight must be"),
    ("debiased", {"max_weight": math.nan}, ValueError, "max_weight must be"),
    ("edm2", {"channels": 0}, ValueError, "edm2: channels must be an int >= 1"),
    ("edm2", {"seed": -1}, ValueError, "edm2: seed must be an int >= 0"),
    ("min_snr", {"gama": 5.0}, TypeError, r"takes \['gamma', 'max_weight'\], not \['gama'\]"),
    ("nope", {}, ValueError, "unknown weighting 'nope'; available"),
]


@pytest.mark.parametrize(("name", "kwargs", "error", "message"), BAD)
def test_bad_parameters_are_refused_at_construction(name, kwargs, error, message):
    with pytest.raises(error, match=message):
        get_weighting(name, **kwargs)


def test_bad_arguments_of_omega_and_weights():
    weighting = get_weighting("min_snr")
    with pytest.raises(ValueError, match="prediction must be one of"):
        weighting.omega(LAM, "x0")
    with pytest.raises(ValueError, match="must not be NaN"):
        weighting.omega(torch.tensor([0.0, math.nan], dtype=F64), "epsilon")
    with pytest.raises(ValueError, match="not a flow-matching schedule"):
        weighting.weights(nj.get_schedule("linear", 10), torch.tensor([1]), "flow_velocity")


def test_every_registered_weighting_is_inspectable_or_says_it_is_not():
    for name in weighting_names():
        weighting = get_weighting(name)
        if isinstance(weighting, Weighting):
            assert weighting.inspectable and weighting.omega(LAM, "v").shape == LAM.shape
        else:
            assert not weighting.inspectable
            with pytest.raises(TypeError, match="not inspectable"):
                weighting.omega(LAM, "v")
