"""Every import path the README and the docs show keeps working after the layout change,
and the compatibility paths are the very objects of their homes (one concept, one home)."""

import importlib

import pytest

DOCUMENTED = {
    "noisejump": ["ForwardProcess", "Schedule", "get_schedule", "Plan", "verify"],
    "noisejump.continuous": ["VPSDE", "SubVPSDE", "EDM", "FlowMatching", "LogSNR"],
    "noisejump.noise": ["get_noise", "available", "NoiseFamily"],
    "noisejump.loss": ["keyed_mse", "keyed_x_t", "min_snr_weights"],
    "noisejump.kernels": ["set_backend", "q_sample_keyed"],
    "noisejump.rng": ["keyed_normal", "philox4x32"],
    "noisejump.integrations.diffusers": ["DiffusersAdapter", "from_diffusers"],
    "noisejump.objective": ["keyed_mse", "TimestepSampler", "min_snr_weight", "target"],
    "noisejump.schedules": ["Schedule", "DiscreteSigmas", "ScheduleLike"],
    "noisejump.processes": ["ForwardProcess", "MixtureProcess", "BlurringProcess"],
    "noisejump.sequences": ["independent_steps", "scheduling_matrix", "frame_steps"],
}


@pytest.mark.parametrize("module", sorted(DOCUMENTED))
def test_documented_import_path_works(module):
    imported = importlib.import_module(module)
    for name in DOCUMENTED[module]:
        assert hasattr(imported, name), f"{module}.{name} is gone"


@pytest.mark.parametrize(
    ("short", "home"),
    [
        ("noisejump.continuous", "noisejump.schedules.continuous"),
        ("noisejump.loss", "noisejump.objective.loss"),
        ("noisejump", "noisejump.processes"),
    ],
)
def test_short_paths_are_the_same_objects_as_their_home(short, home):
    a, b = importlib.import_module(short), importlib.import_module(home)
    shared = [n for n in getattr(a, "__all__", []) if hasattr(b, n)]
    assert shared
    for name in shared:
        assert getattr(a, name) is getattr(b, name)


def test_one_home_for_min_snr():
    from noisejump.objective import loss, weighting

    assert type(loss._weighting(None, 5.0)) is weighting.MinSNR is weighting.snr.MinSNR
    assert weighting.min_snr_weight.__module__ == weighting.__name__
