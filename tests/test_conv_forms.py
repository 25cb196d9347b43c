"""The per-conv benchmark finds the step's convs by tracing it, and times one in both forms (no timing asserted)."""

from maskgan_jax.benchmarks import common, conv_forms
from maskgan_jax.ops import plain


def test_step_convs_are_the_networks_convs():
    config = common.load_config("configs/ebst.py:smoke", [])
    calls = conv_forms.step_convs(config, "dmn")
    batch, size, ngf = config.data.global_batch_size, config.resolution, config.model.generator.ngf
    # The generator's final 7x7 conv to RGB over its reflect-padded last map, once per DMN step.
    assert calls[conv_forms.ConvShape("conv", (batch, size + 6, size + 6, ngf), (7, 7, ngf, 3))] == 1
    # One transposed conv per down-sampling of the generator, each traced once.
    ups = {shape: count for shape, count in calls.items() if shape.kind == "up"}
    assert sum(ups.values()) == config.model.generator.n_downsample
    # The discriminator's first 4x4 stride-2 conv reads image and mask (3 + 19 channels) at full size.
    first = [s for s in calls if s.kernel_shape[:3] == (4, 4, 3 + config.num_classes) and s.x_shape[1] == size]
    assert first and all(s.stride == 2 for s in first)
    # The recording wrappers are gone afterwards.
    assert plain.conv2d.__name__ == "conv2d" and plain.upsample_phases.__name__ == "upsample_phases"


def test_a_conv_is_timed_in_both_forms_and_tabled():
    shape = conv_forms.ConvShape("conv", (2, 10, 10, 6), (7, 7, 6, 3))
    timings = {forms: conv_forms.time_forms(shape, forms, repeats=1) for forms in ("fast", "plain")}
    assert all(seconds > 0 for pair in timings.values() for seconds in pair)
    table = conv_forms.format_table([("dmn", shape, 2, timings["fast"], timings["plain"])])
    assert "| dmn | 7x7 6->3 s1 p0 | 2x10x10x6 | 2 |" in table
    assert "| dmn | all convs, calls x fwd+bwd |" in table
