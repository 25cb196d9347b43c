"""Two processes x 4 CPU devices (jax.distributed on 127.0.0.1) against one process x 8 devices: the same
networks after each phase, and a SIGTERM to one process stops both with a checkpoint."""

import signal
import time

import jax
import numpy as np
from smoke_runs import final_networks, run_two_processes, smoke_config, start_two_processes, wait_for_success

from configs import ebst
from maskgan_jax import checkpoint as ckpt
from maskgan_jax import train


def _assert_close(single, multi, outliers_per_tensor: float = 0.0, outlier_bound: float = 0.0):
    """Parameters and BatchNorm statistics within 1e-3 relative, 1e-4 absolute. The layouts sum gradients
    in different orders (2 x 4 devices reduce across processes, and how XLA groups the all-reduces follows
    the step's HLO, so unrelated edits of the step move the rounding); Adam with the smoke config's lr and
    eps (1e-3 each) passes a gradient's rounding difference to the parameter almost one to one. Measured
    (deterministic, this code): the largest parameter difference after MaskVAE 40 / DMN 4 steps is
    7.2e-5 (generator down/model_4 kernel); 7.7e-5 in a D kernel with an earlier state of the step. A
    wrong batch or shard moves parameters by about the learning rate, 1e-3 per step: 10x above this
    bound. Biases that a following normalisation cancels get pure-noise gradients, hence the absolute
    term. Adam's
    moments, which hold the gradients themselves, within 1e-2 of the largest moment of their network and
    kind (noise-sized moments of those biases pass; the largest ones must agree to 1%). Training on other
    batches moves parameters by about the learning rate (1e-3) per step, and a gradient scaled by another
    batch size scales every moment.

    outliers_per_tensor: the fraction of each tensor's elements (at least one element) allowed outside
    those tolerances, each within `outlier_bound` (parameters) or 10% of its moments' scale (moments).
    For EBST: its first step is each fresh Adam state's first update, lr * g / (|g| + eps), so an element
    whose gradient is rounding noise (|g| near eps) can move by a different fraction of lr in each layout
    (measured: 1 of 1,152 elements of a generator kernel off by 2.3e-4). A wrong batch or shard moves
    most elements by about lr, which the fraction catches."""
    leaves = jax.tree_util.tree_leaves_with_path(single)
    others = jax.tree_util.tree_leaves(multi)
    assert len(leaves) == len(others)

    def moment_kind(path):  # e.g. ('generator', 'mu'), or None for parameters and statistics
        keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
        kinds = ("mu", "nu", "count", "hyperparams")  # hyperparams: the learning rate applied, Adam's betas
        return (keys[0], next(k for k in keys if k in kinds)) if "opt_state" in keys else None

    scales = {}
    for path, a in leaves:
        kind = moment_kind(path)
        if kind is not None:
            scales[kind] = max(scales.get(kind, 0.0), float(np.abs(a).max(initial=0.0)))
    for (path, a), b in zip(leaves, others):
        kind = moment_kind(path)
        tolerance = dict(rtol=0, atol=1e-2 * scales[kind]) if kind else dict(rtol=1e-3, atol=1e-4)
        if not outliers_per_tensor:
            np.testing.assert_allclose(b, a, err_msg=jax.tree_util.keystr(path), **tolerance)
            continue
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        outside = np.abs(b - a) > tolerance["atol"] + tolerance["rtol"] * np.abs(a)
        allowed = max(1, int(outliers_per_tensor * a.size))
        bound = 0.1 * scales[kind] if kind else outlier_bound
        assert outside.sum() <= allowed, (jax.tree_util.keystr(path), int(outside.sum()), a.size)
        assert np.all(np.abs(b - a) <= max(bound, tolerance["atol"])), (jax.tree_util.keystr(path),
                                                                       float(np.abs(b - a).max()))


def test_two_processes_equal_one_process(full_run, tmp_path, smoke_data_dir, compilation_cache):
    """2 processes x 4 CPU devices (jax.distributed on 127.0.0.1) end each phase with the networks of the
    1 process x 8 devices run: same global batches (two logical data shards), same steps.

    MaskVAE (40 steps) and the parser (4) are trained by both layouts from scratch and compared after all
    their steps. The DMN and EBST are compared after one step (EBST: stage 1 and stage 2, started in both
    layouts from the same networks, the one-process run's): adversarial training under Adam amplifies
    rounding differences fast, so more steps would test chaos, not the layout. The rounding differs even
    within a device: XLA:CPU rounds a GEMM differently with 4 or 8 devices in the process (the smoke
    generator's final 7x7 4->3 conv, same inputs on each device: its input gradient differs by 1.9e-5 of
    53). The generator's stem reads piecewise-constant one-hot masks, so whole regions share a
    pre-activation and a ReLU kink moves them together. Measured (AMD EPYC, the smoke DMN, difference
    of the stem kernel's Adam first moment between the layouts, relative to its largest element): 2.8e-4
    after step 1 (the next down convs' 1.7e-4 and 3.5e-4), then 2.3%, 5.6% and 10% after steps 2-4 (the
    next down convs' 10% and 7.5% and a residual block's 6% after step 4); stage 2's generator gradient
    differs by ~1e-4 relative at its first step, and the blender's Adam moments by ~20% of their largest
    value after four."""
    common = ["--config=configs/ebst.py:smoke", f"--config.data.data_dir={smoke_data_dir}"]
    run_two_processes(tmp_path, "pretrain", [*common, f"--workdir={tmp_path / 'pretrain'}",
                                              "--config.phases.dmn.num_steps=1", "--config.phases.ebst.num_steps=0"],
                      compilation_cache)
    for phase, names in (("maskvae", ["mask_vae"]), ("parser", ["parser"])):
        _assert_close(final_networks(full_run, phase, names)[1],
                      final_networks(tmp_path / "pretrain", phase, names)[1])
    config = smoke_config(smoke_data_dir)  # one DMN step in this process, on its 8 devices
    config.update_from_flattened_dict({"phases.maskvae.num_steps": 0, "phases.dmn.num_steps": 1,
                                       "phases.parser.num_steps": 0, "phases.ebst.num_steps": 0})
    train.train(config, tmp_path / "dmn_one")
    names = ["generator", "discriminator"]
    _assert_close(final_networks(tmp_path / "dmn_one", "dmn", names)[1],
                  final_networks(tmp_path / "pretrain", "dmn", names)[1])

    ebst_only = {"phases.maskvae.num_steps": 0, "phases.dmn.num_steps": 0, "phases.ebst.num_steps": 1,
                 **{f"init_from.{name}": str(full_run) for name in ("mask_vae", "generator", "discriminator")}}
    run_two_processes(tmp_path, "ebst", [*common, f"--workdir={tmp_path / 'ebst_two'}",
                                          *(f"--config.{k}={v}" for k, v in ebst_only.items())], compilation_cache)
    config = smoke_config(smoke_data_dir)  # the same, in this process on its 8 devices
    config.update_from_flattened_dict(ebst_only)
    train.train(config, tmp_path / "ebst_one")
    names = ["generator", "discriminator", "blender", "mask_vae"]
    lr = config.phases.ebst.learning_rate
    # Two updates of G and D per EBST step (stages 1 and 2), each at most lr: noise elements within 4 lr.
    _assert_close(final_networks(tmp_path / "ebst_one", "ebst", names)[1],
                  final_networks(tmp_path / "ebst_two", "ebst", names)[1], outliers_per_tensor=0.005,
                  outlier_bound=4 * lr)


def test_sigterm_to_one_of_two_processes_stops_both_with_a_checkpoint(tmp_path, smoke_data_dir, compilation_cache):
    """Only process 1 gets SIGTERM; both agree on a step (at the next logging step), save and exit 0."""
    started = start_two_processes(tmp_path, "run", [
        "--config=configs/ebst.py:smoke", f"--workdir={tmp_path}", f"--config.data.data_dir={smoke_data_dir}",
        "--config.phases.maskvae.num_steps=100000", "--config.phases.maskvae.checkpoint_every_steps=1000000"],
        compilation_cache)
    events = tmp_path / "tensorboard" / "maskvae"
    deadline = time.time() + 300
    while time.time() < deadline and not list(events.glob("events.out.tfevents.*")) and \
            all(p.poll() is None for p, _ in started):
        time.sleep(0.5)
    time.sleep(5)  # let them take a few steps
    started[1][0].send_signal(signal.SIGTERM)
    wait_for_success(started)
    manager = ckpt.create_manager(tmp_path, "maskvae", ebst.get_config("smoke").checkpoint, 1000000)
    step = manager.latest_step()
    log_every = ebst.get_config("smoke").phases.maskvae.log_every_steps
    assert step is not None and 0 < step < 100000 and step % log_every == 0
