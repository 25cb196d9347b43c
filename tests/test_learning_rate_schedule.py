"""state.learning_rate_schedule: the phases' schedule written out step by step, and its errors."""

import math

import ml_collections
import pytest

from configs import ebst
from maskgan_jax import phases
from maskgan_jax import state as state_lib


def _phase(**fields) -> ml_collections.ConfigDict:
    base = dict(num_steps=10, learning_rate=1.0, warmup_fraction=0.0, decay_fraction=0.5, decay_shape="linear")
    return ml_collections.ConfigDict({**base, **fields})


def _rates(phase) -> list[float]:
    schedule = state_lib.learning_rate_schedule(phase)
    return [float(schedule(step)) for step in range(phase.num_steps + 1)]


def test_default_is_pix2pixhd_constant_then_linear_decay_over_the_second_half():
    assert _rates(_phase()) == pytest.approx([1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2, 0], abs=1e-6)


@pytest.mark.parametrize("variant", ["", "quickstart", "smoke"])
def test_configs_other_phases_keep_the_default_schedule(variant):
    """Only the quickstart's parser phase may change its schedule shape."""
    config = ebst.get_config(variant or None)
    for name in phases.PHASES:
        if variant == "quickstart" and name == "parser":
            continue
        phase = config.phases[name]
        assert (phase.warmup_fraction, phase.decay_shape) == (0.0, "linear")


def test_linear_warmup_then_constant_then_linear_decay():
    rates = _rates(_phase(warmup_fraction=0.2, decay_fraction=0.4))
    assert rates == pytest.approx([0, 0.5, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25, 0], abs=1e-6)


def test_warmup_then_cosine_decay_over_the_rest():
    rates = _rates(_phase(warmup_fraction=0.2, decay_fraction=0.8, decay_shape="cosine"))
    expected = [0, 0.5] + [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(9)]
    assert rates == pytest.approx(expected, abs=1e-6)


def test_cosine_decay_without_warmup_starts_at_the_full_rate():
    rates = _rates(_phase(decay_fraction=1.0, decay_shape="cosine"))
    assert rates[0] == pytest.approx(1.0) and rates[5] == pytest.approx(0.5, abs=1e-6) and rates[10] == pytest.approx(0)


@pytest.mark.parametrize("fields, message", [
    (dict(decay_shape="step"), "phase.decay_shape: expected one of"),
    (dict(warmup_fraction=-0.1), "phase.warmup_fraction: expected a fraction in"),
    (dict(decay_fraction=1.5), "phase.decay_fraction: expected a fraction in"),
    (dict(warmup_fraction=0.6, decay_fraction=0.5), "expected at most 1, got 0.6 \\+ 0.5"),
])
def test_bad_fields_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        state_lib.learning_rate_schedule(_phase(**fields))
