"""The training loop end to end on the smoke config: outputs, exact resume, the non-finite guard and
SIGTERM. (Two-process runs: test_train_two_processes.py, so pytest-xdist can run them beside these.)"""

import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from smoke_runs import REPO, assert_trees_equal, final_networks, smoke_config, subprocess_env

from configs import ebst
from maskgan_jax import checkpoint as ckpt
from maskgan_jax import phases
from maskgan_jax import sharding as sharding_lib
from maskgan_jax import state as state_lib
from maskgan_jax import train


def test_main_smoke_writes_checkpoints_events_and_grids(full_run):
    config = ebst.get_config("smoke")
    for phase in phases.PHASES:
        last = config.phases[phase].num_steps
        assert (full_run / "checkpoints" / phase / str(last)).is_dir(), phase
        assert list((full_run / "tensorboard" / phase).glob("events.out.tfevents.*")), phase
        assert (full_run / "images" / f"{phase}_{last:07d}.png").is_file(), phase
    items = {p.name for p in (full_run / "checkpoints" / "ebst" / "4").iterdir()}
    assert {"generator", "discriminator", "mask_vae", "blender", "progress", "data", "config"} <= items
    items = {p.name for p in (full_run / "checkpoints" / "parser" / "4").iterdir() if p.is_dir()}
    assert items == {"parser", "classifier", "progress", "data", "config"}
    assert ckpt.read_config(full_run, "ebst")["resolution"] == 64


def test_ebst_starts_from_checkpoints_without_initialising_them(full_run, smoke_data_dir, monkeypatch):
    """EBST's restored networks are not initialised (only the fresh blender is); their params and
    BatchNorm statistics are the earlier phases' final ones, their optimiser states fresh, exactly
    those of a fresh init (and none for the frozen MaskVAE)."""
    config = smoke_config(smoke_data_dir)
    mesh = sharding_lib.create_mesh(config.mesh)
    networks = state_lib.build_networks(config)
    txs = {name: state_lib.optimizer(config.phases.ebst) for name in phases.TRAINED["ebst"]}
    initialised = []
    original_create_state = state_lib.create_state

    def recording_create_state(name, *args, **kwargs):
        initialised.append(name)
        return original_create_state(name, *args, **kwargs)

    monkeypatch.setattr(state_lib, "create_state", recording_create_state)
    states, _ = train.initial_states("ebst", networks, config, full_run, txs, mesh)
    assert initialised == ["blender"]
    monkeypatch.undo()
    fresh, _ = train.fresh_states("ebst", networks, config, txs, mesh)
    for phase, names in (("dmn", ["generator", "discriminator"]), ("maskvae", ["mask_vae"])):
        _, final = final_networks(full_run, phase, names)
        for name in names:
            assert_trees_equal(states[name].params, final[name]["params"])
            assert_trees_equal(states[name].batch_stats, final[name].get("batch_stats", {}))
            assert_trees_equal(states[name].opt_state, fresh[name].opt_state)
    assert states["mask_vae"].opt_state is None and states["mask_vae"].batch_stats


def test_resume_is_exact_in_every_phase(full_run, tmp_path, smoke_data_dir, compilation_cache, monkeypatch):
    """Stopping once inside each phase and rerunning gives bit-identical networks to the full run."""
    del compilation_cache
    stops = {("maskvae", 25), ("dmn", 3), ("ebst", 1), ("parser", 3)}
    current = {}

    original_train_phase = train.train_phase

    def tracking_train_phase(phase, *args, **kwargs):
        current["phase"] = phase
        return original_train_phase(phase, *args, **kwargs)

    def requested(self, manager, step, poll_all_processes):
        del self, manager, poll_all_processes
        key = (current["phase"], step)
        if key in stops:
            stops.remove(key)
            return True
        return False

    monkeypatch.setattr(train, "train_phase", tracking_train_phase)
    monkeypatch.setattr(train.StopRequest, "requested", requested)
    config = smoke_config(smoke_data_dir)
    runs = 0
    while True:
        results = train.train(config, tmp_path)
        runs += 1
        if not any(r.preempted for r in results):
            break
        assert runs < 6
    assert runs == 5 and not stops
    for phase, names in (("maskvae", ["mask_vae"]), ("dmn", ["generator", "discriminator"]),
                         ("ebst", ["generator", "discriminator", "blender", "mask_vae"]),
                         ("parser", ["parser", "classifier"])):
        step_full, full = final_networks(full_run, phase, names)
        step_resumed, resumed = final_networks(tmp_path, phase, names)
        assert step_full == step_resumed == config.phases[phase].num_steps
        assert_trees_equal(full, resumed)


def test_nonfinite_guard_stops_and_keeps_last_good_checkpoint(tmp_path, smoke_data_dir, monkeypatch):
    config = smoke_config(smoke_data_dir)
    config.phases.maskvae.num_steps = 0
    config.phases.ebst.num_steps = 0
    config.phases.dmn.checkpoint_every_steps = 2
    original = train.input_pipeline.create_iterator

    class PoisonedIterator:
        """The real iterator, with NaN images in its third batch (after the checkpoint at step 2)."""

        def __init__(self, iterator):
            self.iterator, self.index = iterator, 0
            self.get_state, self.set_state = iterator.get_state, iterator.set_state

        def __next__(self):
            batch, self.index = next(self.iterator), self.index + 1
            return dict(batch, image=batch["image"] * np.nan) if self.index == 3 else batch

    def poisoned_iterator(*args, **kwargs):
        return PoisonedIterator(original(*args, **kwargs))

    monkeypatch.setattr(train.input_pipeline, "create_iterator", poisoned_iterator)
    with pytest.raises(train.NonFiniteError, match=r"phase dmn: non-finite .*stage1/g_total.* at step 3.*"
                                                   r"last good checkpoint is step 2"):
        train.train(config, tmp_path)
    manager = ckpt.create_manager(tmp_path, "dmn", config.checkpoint, 2)
    assert manager.all_steps() == [2]
    template = jax.eval_shape(lambda: state_lib.create_state(
        "generator", state_lib.build_networks(config), config, state_lib.optimizer(config.phases.dmn),
        train.sharding_lib.create_mesh(config.mesh))[0])
    restored = ckpt.restore_network(tmp_path, "generator", {"params": template.params}, "dmn")
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(restored))


def test_sigterm_saves_a_restorable_checkpoint_and_exits_0(tmp_path, smoke_data_dir, compilation_cache):
    args = [sys.executable, "main.py", "--config=configs/ebst.py:smoke", f"--workdir={tmp_path}",
            f"--config.data.data_dir={smoke_data_dir}", "--config.phases.maskvae.num_steps=100000",
            "--config.phases.maskvae.checkpoint_every_steps=1000000"]
    log = open(tmp_path / "run.log", "w")  # noqa: SIM115  (a pipe nobody reads could fill and block it)
    process = subprocess.Popen(args, cwd=REPO, env=subprocess_env(compilation_cache, 1),
                               stdout=subprocess.DEVNULL, stderr=log)
    events = tmp_path / "tensorboard" / "maskvae"
    deadline = time.time() + 300
    while time.time() < deadline and not list(events.glob("events.out.tfevents.*")) and process.poll() is None:
        time.sleep(0.5)
    time.sleep(5)  # let it take a few steps
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=300)
    log.close()
    assert process.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
    manager = ckpt.create_manager(tmp_path, "maskvae", ebst.get_config("smoke").checkpoint, 1000000)
    step = manager.latest_step()
    assert step is not None and 0 < step < 100000
    restored = manager.restore(step, args=ckpt.ocp.args.Composite(mask_vae=ckpt.ocp.args.StandardRestore()))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(dict(restored["mask_vae"])))
