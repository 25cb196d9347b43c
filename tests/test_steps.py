"""The jitted steps: sharded over 8 devices they equal the 1-device step; the non-finite guard."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import ebst
from maskgan_jax import phases
from maskgan_jax import sharding as sharding_lib
from maskgan_jax import state as state_lib
from maskgan_jax import steps as steps_lib
from maskgan_jax import train

GLOBAL_BATCH = 8


@pytest.fixture(scope="module")
def config():
    config = ebst.get_config("smoke")
    config.data.global_batch_size = GLOBAL_BATCH
    # The smoke config's Adam eps (1e-3) keeps the noise gradients of biases that a normalisation
    # cancels from becoming +-lr updates whose sign depends on the reduction order.
    assert all(config.phases[phase].eps == 1e-3 for phase in phases.PHASES)
    return config


@pytest.fixture(scope="module")
def networks(config):
    return state_lib.build_networks(config)


def _batch(config, seed=0):
    rng = np.random.default_rng(seed)
    size = config.resolution
    mask = rng.integers(0, config.num_classes, (GLOBAL_BATCH, size, size)).astype(np.int32)
    return {"image": rng.uniform(-1, 1, (GLOBAL_BATCH, size, size, 3)).astype(np.float32),
            "mask": mask, "mask_ref": np.roll(mask, 1, axis=0)}


def _run_step(phase, config, networks, mesh, batch, step=3):
    txs = {name: state_lib.optimizer(config.phases[phase]) for name in phases.TRAINED[phase]}
    states, shardings = train.fresh_states(phase, networks, config, txs, mesh)
    rep = sharding_lib.replicated(mesh)
    guard = jax.device_put(steps_lib.Guard.create(), rep)
    guard_sharding = jax.tree_util.tree_map(lambda _: rep, guard)
    step_fns = train.compile_steps(phase, networks, config, txs, shardings, guard_sharding, mesh)
    batch = jax.device_put(batch, sharding_lib.batch_sharding(mesh))
    metrics = {}
    for fn in step_fns:
        states, guard, m = fn(states, guard, batch, step, None)
        metrics.update(m)
    return jax.device_get((states, guard, metrics))


# EBST runs stage 1 (the DMN step) and stage 2, so these cover every step.
@pytest.mark.parametrize("phase", ["maskvae", "ebst", "parser"])
def test_step_on_8_devices_equals_1_device(phase, config, networks):
    assert len(jax.devices()) >= 8, "conftest sets 8 host devices"
    batch = _batch(config)
    one = _run_step(phase, config, networks, sharding_lib.create_mesh(config.mesh, jax.devices()[:1]), batch)
    eight = _run_step(phase, config, networks, sharding_lib.create_mesh(config.mesh, jax.devices()[:8]), batch)
    for name in one[2]:
        np.testing.assert_allclose(eight[2][name], one[2][name], rtol=2e-4, atol=1e-5, err_msg=name)
    leaves_one = jax.tree_util.tree_leaves_with_path(one[0])
    leaves_eight = jax.tree_util.tree_leaves(eight[0])
    for (path, a), b in zip(leaves_one, leaves_eight):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-6, err_msg=jax.tree_util.keystr(path))
    assert int(one[1].first_bad_step) == -1


def test_fsdp_mesh_shards_parameters_and_matches(config, networks):
    config = config.copy_and_resolve_references()
    config.mesh.data, config.mesh.fsdp, config.mesh.fsdp_min_weight_size = 2, 4, 256
    mesh = sharding_lib.create_mesh(config.mesh, jax.devices()[:8])
    fresh, shardings = state_lib.create_state("generator", networks, config,
                                              state_lib.optimizer(config.phases.dmn), mesh)
    specs = {s.spec for s in jax.tree_util.tree_leaves(shardings)}
    assert any("fsdp" in str(spec) for spec in specs), specs
    del fresh
    batch = _batch(config, seed=1)
    one_device = sharding_lib.create_mesh(ebst.get_config("smoke").mesh, jax.devices()[:1])
    one = _run_step("dmn", config, networks, one_device, batch)
    sharded = _run_step("dmn", config, networks, mesh, batch)
    for name in one[2]:
        np.testing.assert_allclose(sharded[2][name], one[2][name], rtol=2e-4, atol=1e-5, err_msg=name)


def test_guard_keeps_state_and_records_first_nonfinite_step(config, networks):
    mesh = sharding_lib.create_mesh(config.mesh, jax.devices()[:1])
    batch = _batch(config)
    batch["image"][0, 0, 0, 0] = np.nan
    tx = state_lib.optimizer(config.phases.dmn)
    states = {}
    shardings = {}
    for name in ("generator", "discriminator"):
        states[name], shardings[name] = state_lib.create_state(name, networks, config, tx, mesh)
    before = jax.device_get(states)
    rep = sharding_lib.replicated(mesh)
    guard = jax.device_put(steps_lib.Guard.create(), rep)
    step_fn = steps_lib.make_dmn_step(networks, config, tx, tx)
    states, guard, metrics = jax.jit(step_fn)(states, guard, batch, 7, None)
    assert int(guard.first_bad_step) == 7
    bad = steps_lib.describe_bad_terms(int(guard.bad_terms), list(metrics))
    assert "stage1/g_total" in bad and "stage1/g_grad_norm" in bad
    for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(jax.device_get(states))):
        np.testing.assert_array_equal(a, b)
    # A later failure does not overwrite the first one.
    _, guard, _ = jax.jit(step_fn)(states, guard, batch, 9, None)
    assert int(guard.first_bad_step) == 7


def _expected_rate(base, num_steps, step):
    """The phase schedule written out: constant, then linear to 0 over the last half (decay_fraction 0.5)."""
    decay_start = num_steps // 2
    return base if step < decay_start else base * (1 - (step - decay_start) / (num_steps - decay_start))


@pytest.mark.parametrize("phase", ["maskvae", "dmn", "ebst", "parser"])
def test_every_network_applies_its_phase_schedule_at_the_loop_step(phase, config, networks):
    """EBST updates G and D in both stages; each update still applies the rate of the loop step."""
    config = config.copy_and_resolve_references()
    config.phases[phase].update(dict(num_steps=8, learning_rate=1e-3, decay_fraction=0.5))
    mesh = sharding_lib.create_mesh(config.mesh, jax.devices()[:1])
    txs = {name: state_lib.optimizer(config.phases[phase]) for name in phases.TRAINED[phase]}
    states, shardings = train.fresh_states(phase, networks, config, txs, mesh)
    rep = sharding_lib.replicated(mesh)
    guard = jax.device_put(steps_lib.Guard.create(), rep)
    step_fns = train.compile_steps(phase, networks, config, txs, shardings,
                                   jax.tree_util.tree_map(lambda _: rep, guard), mesh)
    batch = jax.device_put(_batch(config), sharding_lib.batch_sharding(mesh))
    rate_names = {"maskvae": ["mask_vae/learning_rate"], "parser": ["parser/learning_rate"],
                  "dmn": ["stage1/learning_rate_generator", "stage1/learning_rate_discriminator"],
                  "ebst": ["stage1/learning_rate_generator", "stage1/learning_rate_discriminator",
                           "stage2/learning_rate_generator_blender", "stage2/learning_rate_discriminator"]}[phase]
    for step in (0, 3, 4, 5, 7):
        metrics = {}
        for fn in step_fns:
            states, guard, m = fn(states, guard, batch, step, None)
            metrics.update(m)
        want = _expected_rate(1e-3, 8, step)
        assert sorted(k for k in metrics if "learning_rate" in k) == sorted(rate_names)
        for name in rate_names:
            assert float(metrics[name]) == pytest.approx(want, rel=1e-6), (name, step)
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


def test_guard_names_the_failed_terms_of_ebst_stage_2(config, networks):
    mesh = sharding_lib.create_mesh(config.mesh, jax.devices()[:1])
    txs = {name: state_lib.optimizer(config.phases.ebst) for name in phases.TRAINED["ebst"]}
    states, _ = train.fresh_states("ebst", networks, config, txs, mesh)
    # A NaN blender breaks stage 2 only: stage 1 never runs it.
    states["blender"] = states["blender"].replace(
        params=jax.tree_util.tree_map(lambda x: jnp.full_like(x, jnp.nan), states["blender"].params))
    stage1 = jax.jit(steps_lib.make_dmn_step(networks, config, txs["generator"], txs["discriminator"], "ebst"))
    stage2 = jax.jit(steps_lib.make_ebst_stage2_step(networks, config, txs["blender"], txs["discriminator"]))
    guard = steps_lib.Guard.create()
    batch = _batch(config)
    states, guard, metrics1 = stage1(states, guard, batch, 5, None)
    assert int(guard.first_bad_step) == -1
    _, guard, metrics2 = stage2(states, guard, batch, 5, None)
    assert (int(guard.first_bad_step), int(guard.bad_stage)) == (5, 1)
    bad = steps_lib.describe_bad_terms(int(guard.bad_terms), list(metrics2))
    assert "stage2/gb_total" in bad and "stage2/b_grad_norm" in bad
    assert all(name.startswith("stage2/") for name in bad)
    assert all(bool(jnp.isfinite(v)) for v in metrics1.values())
