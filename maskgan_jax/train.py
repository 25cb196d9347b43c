"""The training loop over MaskGAN's phases: MaskVAE pretraining -> DMN -> EBST, then the face parser.

    train(config, workdir)

Each phase resumes from its own latest checkpoint, or starts from the previous phases' final
checkpoints (or the checkpoints named in `config.init_from`). A phase whose latest checkpoint is at
its last step is done and skipped, so rerunning the same command continues where the last run stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
import threading
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import parameter_overview
from etils import epath

from maskgan_jax import checkpoint as ckpt
from maskgan_jax import data as data_lib
from maskgan_jax import input_pipeline, objective, ops, paths, previews, runtime, writers
from maskgan_jax import sharding as sharding_lib
from maskgan_jax import state as state_lib
from maskgan_jax import steps as steps_lib
from maskgan_jax.models import load_vgg19_params
from maskgan_jax.phases import FROZEN, JOINT_OPTIMIZER, PHASES, SOURCE_PHASE, TRAINED


class NonFiniteError(RuntimeError):
    """A loss or gradient norm became NaN or Inf; the last good checkpoint is intact."""


@dataclasses.dataclass
class PhaseResult:
    phase: str
    last_step: int
    preempted: bool
    metrics: dict[str, float]


class StopRequest:
    """SIGTERM (or Orbax's preemption notice on multi-host runs) asks the loop to save and exit 0."""

    def __init__(self):
        self._event = threading.Event()
        self._previous = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda *_: self._event.set())

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def requested(self, manager, step: int, poll_all_processes: bool) -> bool:
        """Whether to save and stop after `step`. Multi-process runs must agree: Orbax's preemption
        sync point covers notices JAX relays; a SIGTERM seen by only some processes is shared through a
        collective that every process runs at the same steps (those with `poll_all_processes`)."""
        if jax.process_count() > 1:
            if manager.reached_preemption(step):
                return True
            return poll_all_processes and _any_process(self._event.is_set())
        return self._event.is_set()


def _any_process(flag: bool) -> bool:
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.array(flag))))


def _vgg_params(config: ml_collections.ConfigDict, mesh) -> Any:
    """The frozen VGG19 weights, replicated on the mesh; None when the perceptual term is weighted 0."""
    if config.loss.weights.perceptual == 0:
        return None
    path = config.loss.vgg19_weights
    if path is None:
        raise FileNotFoundError(
            "config.loss.vgg19_weights is not set, and config.loss.weights.perceptual > 0 needs the VGG19 "
            "perceptual loss. Make the weights file once, from Keras' ImageNet VGG19 (h5) or torchvision's "
            "(state_dict):\n"
            "  python -m maskgan_jax.convert_vgg19 --keras_h5=vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 "
            "--out=vgg19.npz\n  python -m maskgan_jax.convert_vgg19 --torch_state_dict=vgg19-dcbb9e9d.pth "
            "--out=vgg19.npz\nthen pass --config.loss.vgg19_weights=vgg19.npz (or set "
            "--config.loss.weights.perceptual=0 to train without it).")
    params = load_vgg19_params(path)
    return jax.device_put(params, sharding_lib.replicated(mesh))


def _source(name: str, phase: str, config: ml_collections.ConfigDict, workdir: epath.Path) -> str | epath.Path | None:
    """Where network `name` starts from in `phase`: config.init_from, else the workdir's checkpoint of the
    phase that trains it (when that is an earlier phase), else nowhere (fresh)."""
    if config.init_from.get(name) is not None:
        return config.init_from[name]
    source_phase = SOURCE_PHASE.get(name)
    if source_phase is None or source_phase == phase:
        return None
    if config.phases[source_phase].num_steps <= 0:
        raise ValueError(f"phase {phase!r} needs a trained {name}, but phases.{source_phase}.num_steps is 0 "
                         f"and config.init_from.{name} is not set")
    return workdir


def fresh_states(phase: str, networks, config, txs: dict[str, Any], mesh) -> tuple[dict[str, Any], dict[str, Any]]:
    """Freshly initialised states of every network the phase touches (phases.TRAINED and FROZEN), and
    their shardings. txs: the optimiser of each trained network; frozen networks carry none."""
    states, shardings = {}, {}
    for name in TRAINED[phase] + FROZEN[phase]:
        states[name], shardings[name] = state_lib.create_state(
            name, networks, config, txs.get(name), mesh, optimized=JOINT_OPTIMIZER.get(phase, {}).get(name))
    return states, shardings


def initial_states(phase: str, networks, config, workdir: epath.Path, txs: dict[str, Any], mesh):
    """The phase's starting states and their shardings: as `fresh_states`, but with parameters (and
    BatchNorm statistics) from `_source` where it names one (those networks are not initialised:
    `state.restored_state`); optimiser states always start fresh."""
    states, shardings = {}, {}
    for name in TRAINED[phase] + FROZEN[phase]:
        tx, joint = txs.get(name), JOINT_OPTIMIZER.get(phase, {}).get(name)
        source = _source(name, phase, config, workdir)
        if source is None:
            states[name], shardings[name] = state_lib.create_state(name, networks, config, tx, mesh, optimized=joint)
            continue
        if joint is not None:  # no such network has a source today (the blender starts fresh in EBST)
            raise ValueError(f"phase {phase}: {name} starts from {source}, but its optimiser state covers "
                             f"{joint}; restoring such a network is not supported")
        restore = functools.partial(ckpt.restore_network, source, name, phase_hint=SOURCE_PHASE[name])
        states[name], shardings[name] = state_lib.restored_state(name, networks, config, tx, mesh, restore)
        logging.info("phase %s: %s from %s", phase, name, source)
    return states, shardings


def compile_steps(phase: str, networks, config, txs, state_shardings, guard_sharding, mesh):
    """The phase's jitted steps (stage 1 and 2 for EBST), sharded and donating the state, traced in
    config.model.layer_forms."""
    batch = sharding_lib.batch_sharding(mesh)
    batch_shardings = {"image": batch, "mask": batch, "mask_ref": batch, "attributes": batch}
    rep = sharding_lib.replicated(mesh)

    def jit(step_fn):
        traced = ops.traced_in(config.model.layer_forms, step_fn)
        return jax.jit(traced, in_shardings=(state_shardings, guard_sharding, batch_shardings, rep, rep),
                       out_shardings=(state_shardings, guard_sharding, rep), donate_argnums=(0, 1))

    if phase == "maskvae":
        return [jit(steps_lib.make_maskvae_step(networks, config, txs["mask_vae"]))]
    if phase == "parser":
        return [jit(steps_lib.make_parser_step(networks, config, txs["parser"], txs["classifier"]))]
    stage1 = jit(steps_lib.make_dmn_step(networks, config, txs["generator"], txs["discriminator"], phase))
    if phase == "dmn":
        return [stage1]
    return [stage1, jit(steps_lib.make_ebst_stage2_step(networks, config, txs["blender"], txs["discriminator"],
                                                         phase))]


def _check_guard(guard: steps_lib.Guard, stage_metric_names: list[list[str]], phase: str, manager) -> None:
    """Raises NonFiniteError naming the failed terms if the guard recorded a non-finite step.
    stage_metric_names: each stage's metric names (the guard's bits index the failed stage's)."""
    first_bad = int(jax.device_get(guard.first_bad_step))
    if first_bad < 0:
        return
    names = stage_metric_names[int(jax.device_get(guard.bad_stage))]
    terms = steps_lib.describe_bad_terms(int(jax.device_get(guard.bad_terms)), names)
    # An earlier asynchronous save may still be in flight: finish it so the last good checkpoint is
    # complete on disk (not a temporary directory a later run would clean up) before stopping.
    ckpt.wait(manager)
    latest = manager.latest_step()
    raise NonFiniteError(
        f"phase {phase}: non-finite {', '.join(terms) or 'values'} at step {first_bad + 1}; stopping. "
        f"The update of that step was not applied and nothing after it was saved; the last good "
        f"checkpoint is step {latest} in {ckpt.phase_directory(manager.directory.parent.parent, phase)}.")


def train_phase(phase: str, config: ml_collections.ConfigDict, workdir: epath.Path, mesh, networks,
                vgg_params, stop: StopRequest) -> PhaseResult:
    """Runs (or resumes) one phase to its last step, or until a stop request."""
    phase_config = config.phases[phase]
    num_steps = phase_config.num_steps
    manager = ckpt.create_manager(workdir, phase, config.checkpoint, phase_config.checkpoint_every_steps)
    latest = manager.latest_step()
    if latest is not None and latest >= num_steps:
        logging.info("phase %s: done (checkpoint at step %d)", phase, latest)
        return PhaseResult(phase, latest, False, {})

    txs = {name: state_lib.optimizer(phase_config) for name in TRAINED[phase]}
    states, state_shardings = initial_states(phase, networks, config, workdir, txs, mesh)
    guard = jax.device_put(steps_lib.Guard.create(), sharding_lib.replicated(mesh))
    guard_sharding = jax.tree_util.tree_map(lambda _: sharding_lib.replicated(mesh), guard)
    iterator = input_pipeline.create_iterator(data_lib.pipeline_config(config, phase, workdir), mesh,
                                              sharding_lib.BATCH_AXES)
    start = 0
    if latest is not None:
        abstract = {n: state_lib.abstract_with_shardings(jax.eval_shape(lambda s=s: s), state_shardings[n])
                    for n, s in states.items()}
        states, guard = ckpt.restore(manager, latest, abstract, ckpt.abstract_of(guard), iterator)
        start = latest
        logging.info("phase %s: resumed at step %d", phase, start)

    is_lead = jax.process_index() == 0
    writer = writers.create_writer(workdir / "tensorboard" / phase if is_lead else None)
    if start == 0:
        for name, s in states.items():
            parameter_overview.log_parameter_overview(s.params, msg=f"phase {phase}: {name}")
        writer.write_hparams(_flatten_config(config))
    hooks = [writers.ProgressReporter(writer, num_steps, phase_config.log_every_steps, start)]
    if config.profile_steps and is_lead:
        hooks.append(writers.TraceSteps(workdir / "profile" / phase, first_step=start + 10,
                                        num_steps=config.profile_steps))
    step_fns = compile_steps(phase, networks, config, txs, state_shardings, guard_sharding, mesh)
    preview_fn = previews.make_preview_fn(phase, networks, config, mesh)

    metrics, host_metrics, preempted, step = {}, {}, False, start
    stage_metric_names = [[] for _ in step_fns]
    # Whatever ends the loop (the last step, a stop request, an error), pending saves finish first.
    try:
        for step in range(start, num_steps):
            batch = next(iterator)
            for stage, step_fn in enumerate(step_fns):
                states, guard, stage_metrics = step_fn(states, guard, batch, step, vgg_params)
                metrics.update(stage_metrics)
                stage_metric_names[stage] = list(stage_metrics)
            done = step + 1
            for hook in hooks:
                hook(done)
            is_last = done == num_steps
            if done % phase_config.log_every_steps == 0 or is_last:
                _check_guard(guard, stage_metric_names, phase, manager)
                host_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                writer.write_scalars(done, host_metrics)
                writer.flush()
            if done % phase_config.image_every_steps == 0 or is_last:
                grid = np.asarray(jax.device_get(preview_fn(states, batch)))
                writer.write_images(done, {f"{phase}/grid": grid[None]})
                writer.flush()
                if is_lead:
                    previews.save_png(grid, workdir / "images" / f"{phase}_{done:07d}.png")
            preempted = stop.requested(manager, done, poll_all_processes=done % phase_config.log_every_steps == 0)
            if preempted or manager.should_save(done) or is_last:
                _check_guard(guard, stage_metric_names, phase, manager)
                ckpt.save(manager, done, states, guard, iterator, config, force=preempted or is_last)
            if preempted:
                logging.warning("phase %s: stop requested; saved step %d", phase, done)
                break
    finally:
        ckpt.wait(manager)
        writer.close()
    return PhaseResult(phase, step + 1 if num_steps > start else start, preempted, host_metrics)


def _flatten_config(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            flat.update(_flatten_config(ml_collections.ConfigDict(value), name + "."))
        else:
            flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def train(config: ml_collections.ConfigDict, workdir: str | epath.PathLike) -> list[PhaseResult]:
    """Runs every phase with num_steps > 0, in order. Returns each phase's result; stops early (and
    returns) when a stop was requested, after saving.

    workdir: a local folder or a gs:// URI (see `checkpoint.phase_directory` for what orbax can write).
    """
    objective.check_weights(config.loss.weights)
    workdir = paths.as_path(workdir)
    ckpt.check_checkpoint_path(workdir, "--workdir")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except ImportError as e:  # etils.epath without TensorFlow reaches gs:// through gcsfs
        raise ImportError(f"--workdir={workdir}: no filesystem for {paths.scheme(workdir)}:// paths is installed "
                          f"({e}); install the [gcs] extra: pip install 'maskgan_jax[gcs]'") from e
    if config.compilation_cache_dir:
        runtime.enable_compilation_cache(paths.join(workdir, config.compilation_cache_dir))
    data_lib.prepare_dataset(config, workdir)
    mesh = sharding_lib.create_mesh(config.mesh)
    if config.data.global_batch_size % mesh.size:
        raise ValueError(f"config.data.global_batch_size={config.data.global_batch_size} must be a multiple of "
                         f"the {mesh.size} devices of the mesh {dict(mesh.shape)}")
    networks = state_lib.build_networks(config)
    vgg_params = _vgg_params(config, mesh)
    stop = StopRequest()
    stop.install()
    results = []
    try:
        for phase in PHASES:
            if config.phases[phase].num_steps <= 0:
                logging.info("phase %s: skipped (num_steps is 0)", phase)
                continue
            result = train_phase(phase, config, workdir, mesh, networks, vgg_params, stop)
            results.append(result)
            if result.preempted:
                break
    finally:
        stop.uninstall()
    return results
