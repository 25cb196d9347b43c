"""The jitted steps: sharded over 8 devices they equal the 1-device step; the non-finite guard."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import ebst
from maskgan_jax import objective, phases
from maskgan_jax import sharding as sharding_lib
from maskgan_jax import state as state_lib
from maskgan_jax import steps as steps_lib
from maskgan_jax import train

GLOBAL_BATCH = 8


# Every phase on one schedule, so one compiled step per phase and device count serves every test here
# (compiling the steps is most of this file's time): constant 1e-3 for 4 steps, then linear to 0.
SCHEDULE = dict(num_steps=8, learning_rate=1e-3, decay_fraction=0.5)


@pytest.fixture(scope="module")
def config():
    config = ebst.get_config("smoke")
    config.data.global_batch_size = GLOBAL_BATCH
    for phase in phases.PHASES:
        config.phases[phase].update(SCHEDULE)
    # The smoke config's Adam eps (1e-3) keeps the noise gradients of biases that a normalisation
    # cancels from becoming +-lr updates whose sign depends on the reduction order.
    assert all(config.phases[phase].eps == 1e-3 for phase in phases.PHASES)
    return config


@pytest.fixture(scope="module")
def networks(config):
    return state_lib.build_networks(config)


class CompiledSteps:
    """The jitted steps of a phase on the first `num_devices` devices, compiled once per module."""

    def __init__(self, config, networks):
        self.config, self.networks, self._cache = config, networks, {}

    def __call__(self, phase, num_devices=1):
        """Returns (mesh, txs, step_fns)."""
        key = (phase, num_devices)
        if key not in self._cache:
            mesh = sharding_lib.create_mesh(self.config.mesh, jax.devices()[:num_devices])
            txs = {name: state_lib.optimizer(self.config.phases[phase]) for name in phases.TRAINED[phase]}
            _, shardings = train.fresh_states(phase, self.networks, self.config, txs, mesh)
            rep = sharding_lib.replicated(mesh)
            guard_sharding = jax.tree_util.tree_map(lambda _: rep, steps_lib.Guard.create())
            step_fns = train.compile_steps(phase, self.networks, self.config, txs, shardings, guard_sharding, mesh)
            self._cache[key] = (mesh, txs, step_fns)
        return self._cache[key]

    def fresh(self, phase, num_devices=1):
        """Fresh states and guard on the phase's mesh, ready for its step functions."""
        mesh, txs, _ = self(phase, num_devices)
        states, _ = train.fresh_states(phase, self.networks, self.config, txs, mesh)
        return states, jax.device_put(steps_lib.Guard.create(), sharding_lib.replicated(mesh))

    def run(self, phase, num_devices, batch, steps=(3,)):
        """Every stage of `phase` at each loop step in `steps`, from fresh states. Returns NumPy
        (states, guard, metrics of the last step)."""
        mesh, _, step_fns = self(phase, num_devices)
        states, guard = self.fresh(phase, num_devices)
        batch = jax.device_put(batch, sharding_lib.batch_sharding(mesh))
        for step in steps:
            metrics = {}
            for fn in step_fns:
                states, guard, m = fn(states, guard, batch, step, None)
                metrics.update(m)
        return jax.device_get((states, guard, metrics))


@pytest.fixture(scope="module")
def compiled(config, networks):
    return CompiledSteps(config, networks)


def _batch(config, seed=0):
    rng = np.random.default_rng(seed)
    size = config.resolution
    mask = rng.integers(0, config.num_classes, (GLOBAL_BATCH, size, size)).astype(np.int32)
    return {"image": rng.uniform(-1, 1, (GLOBAL_BATCH, size, size, 3)).astype(np.float32),
            "mask": mask, "mask_ref": np.roll(mask, 1, axis=0),
            "attributes": rng.integers(0, 2, (GLOBAL_BATCH, 40)).astype(np.int32)}


def _adam_moments(states):
    """{(network, path): Adam's first moment} of every trained network: after a stage's update from
    identical starting states, two runs' moments differ by (1 - b1) times their gradients' difference."""
    moments = {}
    for name, net in states.items():
        if net.opt_state is not None:
            for path, leaf in jax.tree_util.tree_leaves_with_path(net.opt_state.inner_state[0].mu):
                moments[(name, jax.tree_util.keystr(path))] = np.asarray(leaf, np.float64)
    return moments


def _network_scales(moments):
    """{network: its largest first-moment element}."""
    scales = {}
    for (name, _), moment in moments.items():
        scales[name] = max(scales.get(name, 0.0), float(np.abs(moment).max()))
    return scales


def _gradient_tolerance(moment, reordered_moment, network_scale):
    """The allowed largest difference of a first-moment tensor between layouts: 8x the rounding noise
    measured by reordering the batch, 1e-5 of the tensor's largest element, 1e-6 of the network's."""
    noise = np.abs(reordered_moment - moment).max()
    return 8 * noise + 1e-5 * np.abs(moment).max() + 1e-6 * network_scale


def _run_stage(compiled, phase, num_devices, stage, states, batch, step=3):
    """One stage of `phase` from the NumPy `states`; returns NumPy (states, metrics)."""
    fn = compiled(phase, num_devices)[2][stage]
    _, guard = compiled.fresh(phase, num_devices)
    states, guard, metrics = fn(states, guard, batch, step, None)
    assert int(guard.first_bad_step) == -1
    return jax.device_get((states, metrics))


def _edits_of_the_batch(networks, config, vae_variables, mask, mask_ref):
    """A stand-in for steps.simulated_edits whose result the batch alone decides: M_inter = the reference
    mask, M_outer = the target's own (see test_simulated_edits_differ_between_layouts_only_at_ties)."""
    del networks, config, vae_variables
    return mask_ref.astype(jnp.int32), mask.astype(jnp.int32)


# The stand-ins' sharpness: their derivative, sigmoid(SHARPNESS * x), moves by SHARPNESS / 4 times a
# pre-activation's rounding (~1e-6), so by rounding only, while they stay ReLU-like at the O(1)
# scale of the normalised pre-activations.
SMOOTH_ACTIVATION_SHARPNESS = 10.0


def _smooth_relu(x):
    return jax.nn.softplus(SMOOTH_ACTIVATION_SHARPNESS * x) / SMOOTH_ACTIVATION_SHARPNESS


def _smooth_leaky_relu(x, negative_slope=0.01):
    return negative_slope * x + (1 - negative_slope) * _smooth_relu(x)


def _smooth_activations(monkeypatch):
    """Every network's nn.relu and nn.leaky_relu (the only kinked activations the steps trace) become
    softplus forms whose derivative is continuous, for steps traced after this call."""
    monkeypatch.setattr(nn, "relu", _smooth_relu)
    monkeypatch.setattr(nn, "leaky_relu", _smooth_leaky_relu)


# EBST runs stage 1 (the DMN step) and stage 2, so these cover every step.
@pytest.mark.parametrize("phase", ["maskvae", "ebst", "parser"])
def test_step_on_8_devices_equals_1_device(phase, config, networks, compiled, monkeypatch):
    """Each stage, started from the same states on 1 device and on 8 (one example each), computes the
    same losses and the same gradients up to rounding, and so the same update.

    What the layout determines is how each gradient is summed over the batch (inside one device, or
    per device and then across devices), so the test compares gradients, read from Adam's first moment,
    against the rounding noise of the 1-device step measured in the same run: the same step on the
    batch in another order, which sums the same terms in another order. Each gradient tensor must agree
    within 8x that noise, plus 1e-5 of its largest element (tensors whose measured noise is 0) and 1e-6
    of its network's largest gradient element (biases that a normalisation cancels have pure-noise
    gradients, ~1e-10).
    The networks are traced with smooth stand-ins for ReLU and leaky ReLU (_smooth_activations): the
    derivative of a ReLU jumps at 0, so a pre-activation that the layouts round to opposite sides of 0
    passes its gradient in one layout and not in the other, and through the normalisations before it
    that one pixel moves whole channels' gradients. Measured on an AMD EPYC (the parser, smoke config):
    1 of its 819,200 ReLU inputs, up_1/norm_1 at -8.0e-7 on 1 device and +4.0e-7 on 2, moved its
    down-path kernel gradients by up to 2e-3 of their largest element (200x this test's allowance);
    with the stand-ins, every kernel and normalisation parameter of the parser phase agreed within
    1.8e-5 of its largest element, at most 0.1 of the allowance (maskvae 0.6, EBST 0.14 and 0.38, the
    same machine). An Intel Xeon had no such pixel and passed with
    the real ReLU (layout differences up to 8.6e-7, permutation noise up to 6e-7). The real ReLU's
    forward is the same function in every layout; the losses it gives are compared in
    test_fsdp_mesh_shards_parameters_and_matches.
    Parameters are then compared through Adam's sensitivity rather than directly: a first Adam step
    moves an element by lr * g / (|g| + eps), whose slope in g is at most lr / eps (1 here), so an
    element whose gradient is rounding noise can move by any fraction of lr; each parameter must agree
    within 2 lr / eps times the largest gradient difference of the stage. The MaskVAE step draws its
    reparameterisation noise per example, so reordering its batch changes its sums; its gradients are
    held to 2e-4 of each tensor's largest element plus 1e-5 of the network's largest instead (measured:
    the biases its BatchNorms cancel differ by up to 5e-9, 1.7e-6 of the network's 3e-3).
    EBST stage 2 edits with the argmax of the MaskVAE's decoded logits, which the rounding decides where
    two classes tie (a fresh MaskVAE's logits are ~1e-7, its top two as close as 3e-12), and G_B's stem
    reads those masks directly: one flipped pixel moved its kernel gradient by 1.3e-3. So here stage 2
    edits with masks of the batch (_edits_of_the_batch), and the edits' own layout dependence is the
    next test's."""
    assert len(jax.devices()) >= 8, "conftest sets 8 host devices"
    batch = _batch(config)
    order = np.random.default_rng(1).permutation(GLOBAL_BATCH)
    reordered = {key: value[order] for key, value in batch.items()}
    hp = config.phases[phase]
    _smooth_activations(monkeypatch)
    if phase == "ebst":
        monkeypatch.setattr(steps_lib, "simulated_edits", _edits_of_the_batch)
    compiled = CompiledSteps(config, networks)  # traced with the stand-ins
    states, _ = jax.device_get(compiled.fresh(phase, 1))
    for stage in range(len(compiled(phase, 1)[2])):
        one, metrics_one = _run_stage(compiled, phase, 1, stage, states, batch)
        eight, metrics_eight = _run_stage(compiled, phase, 8, stage, states, batch)
        for name in metrics_one:
            np.testing.assert_allclose(metrics_eight[name], metrics_one[name], rtol=2e-4, atol=1e-5, err_msg=name)
        grads_one, grads_eight = _adam_moments(one), _adam_moments(eight)
        if phase != "maskvae":
            grads_noise = _adam_moments(_run_stage(compiled, phase, 1, stage, states, reordered)[0])
        largest_difference = 0.0
        network_scale = _network_scales(grads_one)
        for key, g1 in grads_one.items():
            scale = np.abs(g1).max()
            difference = np.abs(grads_eight[key] - g1).max()
            if phase == "maskvae":
                allowed = 2e-4 * scale + 1e-5 * network_scale[key[0]]
            else:
                allowed = _gradient_tolerance(g1, grads_noise[key], network_scale[key[0]])
            assert difference <= allowed, (stage, key, difference, allowed)
            largest_difference = max(largest_difference, difference / (1 - hp.b1))
        parameter_bound = 2 * hp.learning_rate / hp.eps * largest_difference + 1e-7
        for name in one:
            for part in ("params", "batch_stats"):
                a, b = getattr(one[name], part), getattr(eight[name], part)
                for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b)):
                    tolerance = dict(rtol=0, atol=parameter_bound) if part == "params" else dict(rtol=1e-4, atol=1e-6)
                    np.testing.assert_allclose(y, x, err_msg=f"stage {stage} {name} {jax.tree_util.keystr(path)}",
                                               **tolerance)
        states = one


def test_simulated_edits_differ_between_layouts_only_at_ties(config, networks, compiled):
    """EBST's simulated edits on 8 devices equal those on 1 wherever a pixel's two largest decoded logits
    are apart by more than 1e-4 of the largest logit (float32 rounding is ~1e-7 of it)."""
    states, _ = jax.device_get(compiled.fresh("ebst", 1))
    variables = states["mask_vae"].variables()
    batch = _batch(config)
    edits = {}
    for num_devices in (1, 8):
        mesh = sharding_lib.create_mesh(config.mesh, jax.devices()[:num_devices])
        rows = sharding_lib.batch_sharding(mesh)
        fn = jax.jit(lambda v, m, r: steps_lib.simulated_edits(networks, config, v, m, r),
                     in_shardings=(sharding_lib.replicated(mesh), rows, rows), out_shardings=(rows, rows))
        edits[num_devices] = np.concatenate(jax.device_get(fn(variables, batch["mask"], batch["mask_ref"])))
    module = networks.mask_vae
    both = jax.nn.one_hot(np.concatenate([batch["mask"], batch["mask_ref"]]), config.num_classes)
    z_t, z_ref = np.split(np.asarray(module.apply(variables, both, False, method=module.encode)[0]), 2)
    v = (z_ref - z_t) / config.loss.lambda_inter
    logits = np.sort(np.asarray(module.apply(variables, np.concatenate([z_t + v, z_t - v]), False,
                                             method=module.decode)), axis=-1)
    gaps = logits[..., -1] - logits[..., -2]
    flipped = edits[1] != edits[8]
    assert np.all(gaps[flipped] <= 1e-4 * np.abs(logits).max()), (int(flipped.sum()), gaps[flipped].max())


def test_edit_class_colour_reaches_generator_and_blender_through_stage_2(config, networks, monkeypatch):
    """With every term of G_B's objective on the blend at 0, stage 2's G_B gradient is the
    edit_class_colour term's own: the one computed here from blend_edits' renders of the same edits (the
    blender, which the term does not read, gets none)."""
    monkeypatch.setattr(steps_lib, "simulated_edits", _edits_of_the_batch)
    colour_config = config.copy_and_resolve_references()
    for name in objective.GENERATOR_TERMS:
        colour_config.loss.weights[name] = 0.0
    colour_config.loss.weights.edit_class_colour = 1.0
    compiled = CompiledSteps(colour_config, networks)
    states, _ = jax.device_get(compiled.fresh("ebst", 1))
    batch = _batch(config)
    new, metrics = _run_stage(compiled, "ebst", 1, 1, states, batch)
    onehot = lambda labels: jax.nn.one_hot(labels, config.num_classes)
    source_mask, inter, outer = onehot(batch["mask"]), onehot(batch["mask_ref"]), onehot(batch["mask"])

    def term(gb_params):
        i_inter, i_outer, _ = steps_lib.blend_edits(networks, *gb_params, batch["image"], source_mask, inter, outer)
        return objective.EDIT_TERMS["edit_class_colour"](objective.EditInputs(
            source=batch["image"], source_mask=source_mask, edits=jnp.concatenate([i_inter, i_outer]),
            edit_masks=jnp.concatenate([inter, outer]),
            class_colour_min_pixels=colour_config.loss.class_colour_min_pixels))

    value, (g_grads, b_grads) = jax.value_and_grad(term)((states["generator"].params, states["blender"].params))
    assert float(metrics["stage2/edit_class_colour"]) == pytest.approx(float(value), rel=1e-5)
    moments = new["blender"].opt_state.inner_state[0].mu
    b1 = colour_config.phases.ebst.b1
    # Biases that a normalisation cancels have pure-noise gradients: held to 1e-5 of the largest element.
    largest = max(float(np.abs(leaf).max()) for leaf in jax.tree_util.tree_leaves(g_grads))
    assert largest > 0
    for name, grads in (("generator", g_grads), ("blender", b_grads)):
        for (path, moment), grad in zip(jax.tree_util.tree_leaves_with_path(moments[name]),
                                        jax.tree_util.tree_leaves(grads)):
            np.testing.assert_allclose(moment, (1 - b1) * np.asarray(grad), rtol=1e-3, atol=1e-5 * largest,
                                       err_msg=f"{name} {jax.tree_util.keystr(path)}")


def test_step_on_8_devices_with_another_batch_differs(config, compiled):
    """The comparison above can fail: a batch with one example changed moves the gradients far outside
    its noise bound."""
    batch = _batch(config)
    other = {key: value.copy() for key, value in batch.items()}
    other["image"][5] = -other["image"][5]
    states, _ = jax.device_get(compiled.fresh("parser", 1))
    grads_one = _adam_moments(_run_stage(compiled, "parser", 1, 0, states, batch)[0])
    grads_noise = _adam_moments(_run_stage(compiled, "parser", 1, 0, states,
                                           {k: v[::-1] for k, v in batch.items()})[0])
    grads_other = _adam_moments(_run_stage(compiled, "parser", 8, 0, states, other)[0])
    scale = _network_scales(grads_one)
    outside = [key for key, g1 in grads_one.items()
               if np.abs(grads_other[key] - g1).max() > _gradient_tolerance(g1, grads_noise[key], scale[key[0]])]
    # Biases that a normalisation cancels keep pure-noise gradients; every other tensor moves.
    assert len(outside) > 0.5 * len(grads_one), (len(outside), len(grads_one))


def test_fsdp_mesh_shards_parameters_and_matches(config, networks, compiled):
    fsdp_config = config.copy_and_resolve_references()
    fsdp_config.mesh.data, fsdp_config.mesh.fsdp, fsdp_config.mesh.fsdp_min_weight_size = 2, 4, 256
    mesh = sharding_lib.create_mesh(fsdp_config.mesh, jax.devices()[:8])
    txs = {name: state_lib.optimizer(fsdp_config.phases.dmn) for name in phases.TRAINED["dmn"]}
    states, shardings = train.fresh_states("dmn", networks, fsdp_config, txs, mesh)
    specs = {s.spec for s in jax.tree_util.tree_leaves(shardings["generator"])}
    assert any("fsdp" in str(spec) for spec in specs), specs
    rep = sharding_lib.replicated(mesh)
    guard = jax.device_put(steps_lib.Guard.create(), rep)
    (step_fn,) = train.compile_steps("dmn", networks, fsdp_config, txs, shardings,
                                     jax.tree_util.tree_map(lambda _: rep, guard), mesh)
    batch = _batch(config, seed=1)
    _, _, sharded = jax.device_get(step_fn(states, guard, jax.device_put(batch, sharding_lib.batch_sharding(mesh)),
                                           3, None))
    _, _, one = compiled.run("dmn", 1, batch)
    for name in one:
        np.testing.assert_allclose(sharded[name], one[name], rtol=2e-4, atol=1e-5, err_msg=name)


def test_guard_keeps_state_and_records_first_nonfinite_step(compiled, config):
    batch = _batch(config)
    batch["image"][0, 0, 0, 0] = np.nan
    (step_fn,) = compiled("dmn")[2]
    states, guard = compiled.fresh("dmn")
    before = jax.device_get(states)
    states, guard, metrics = step_fn(states, guard, batch, 7, None)
    assert int(guard.first_bad_step) == 7
    bad = steps_lib.describe_bad_terms(int(guard.bad_terms), list(metrics))
    assert "stage1/g_total" in bad and "stage1/g_grad_norm" in bad
    for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(jax.device_get(states))):
        np.testing.assert_array_equal(a, b)
    # A later failure does not overwrite the first one.
    _, guard, _ = step_fn(states, guard, batch, 9, None)
    assert int(guard.first_bad_step) == 7


def _expected_rate(step):
    """SCHEDULE written out: constant, then linear to 0 over the last half (decay_fraction 0.5)."""
    base, num_steps = SCHEDULE["learning_rate"], SCHEDULE["num_steps"]
    decay_start = num_steps // 2
    return base if step < decay_start else base * (1 - (step - decay_start) / (num_steps - decay_start))


@pytest.mark.parametrize("phase", ["maskvae", "dmn", "ebst", "parser"])
def test_every_network_applies_its_phase_schedule_at_the_loop_step(phase, compiled, config):
    """EBST updates G and D in both stages; each update still applies the rate of the loop step."""
    _, _, step_fns = compiled(phase)
    states, guard = compiled.fresh(phase)
    batch = _batch(config)
    rate_names = {"maskvae": ["mask_vae/learning_rate"],
                  "parser": ["parser/learning_rate", "classifier/learning_rate"],
                  "dmn": ["stage1/learning_rate_generator", "stage1/learning_rate_discriminator"],
                  "ebst": ["stage1/learning_rate_generator", "stage1/learning_rate_discriminator",
                           "stage2/learning_rate_generator_blender", "stage2/learning_rate_discriminator"]}[phase]
    for step in (0, 3, 4, 5, 7):
        metrics = {}
        for fn in step_fns:
            states, guard, m = fn(states, guard, batch, step, None)
            metrics.update(m)
        assert sorted(k for k in metrics if "learning_rate" in k) == sorted(rate_names)
        for name in rate_names:
            assert float(metrics[name]) == pytest.approx(_expected_rate(step), rel=1e-6), (name, step)
    assert int(guard.first_bad_step) == -1


def test_ebst_states_frozen_vae_has_no_optimiser_and_stage2_has_its_own(config, networks):
    mesh = sharding_lib.create_mesh(config.mesh, jax.devices()[:1])
    txs = {name: state_lib.optimizer(config.phases.ebst) for name in phases.TRAINED["ebst"]}
    states, _ = train.fresh_states("ebst", networks, config, txs, mesh)
    assert states["mask_vae"].opt_state is None
    # The blender's optimiser is stage 2's joint one (the reference's optimizer_GB) over G_A and B.
    moments = states["blender"].opt_state.inner_state[0].mu
    assert set(moments) == {"generator", "blender"}
    assert (jax.tree_util.tree_structure(moments["generator"])
            == jax.tree_util.tree_structure(states["generator"].params))
    assert (jax.tree_util.tree_structure(states["generator"].opt_state.inner_state[0].mu)
            == jax.tree_util.tree_structure(states["generator"].params))


def test_guard_names_the_failed_terms_of_ebst_stage_2(compiled, config):
    stage1, stage2 = compiled("ebst")[2]
    states, guard = compiled.fresh("ebst")
    # A NaN blender breaks stage 2 only: stage 1 never runs it.
    states["blender"] = states["blender"].replace(
        params=jax.tree_util.tree_map(lambda x: jnp.full_like(x, jnp.nan), states["blender"].params))
    batch = _batch(config)
    states, guard, metrics1 = stage1(states, guard, batch, 5, None)
    assert int(guard.first_bad_step) == -1
    _, guard, metrics2 = stage2(states, guard, batch, 5, None)
    assert (int(guard.first_bad_step), int(guard.bad_stage)) == (5, 1)
    bad = steps_lib.describe_bad_terms(int(guard.bad_terms), list(metrics2))
    assert "stage2/gb_total" in bad and "stage2/b_grad_norm" in bad
    assert all(name.startswith("stage2/") for name in bad)
    assert all(bool(jnp.isfinite(v)) for v in metrics1.values())
