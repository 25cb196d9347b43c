"""Orbax checkpoints: one manager per phase, one item per network, plus the data iterator, progress
and the config.

Layout: <workdir>/checkpoints/<phase>/<step>/{generator, discriminator, mask_vae, blender, progress,
data, config}. Saves are asynchronous; Orbax writes each step into a temporary directory and renames
it when complete, so a run that dies mid-save leaves the previous checkpoint as the latest. Restores
always go against abstract targets that carry the current shardings, so a checkpoint written on 8
devices restores onto 1 and vice versa.

Where checkpoints can live: a local (or mounted) folder, or gs://. Orbax writes its metadata through
etils.epath but the arrays through TensorStore, whose only object-store driver orbax selects is GCS;
any other scheme (s3://, az://, ...) would reach TensorStore's file driver as a relative local path,
so `check_checkpoint_path` refuses those before anything is written.
"""

from __future__ import annotations

import json
import os
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers

from maskgan_jax import paths

PROGRESS = "progress"
DATA = "data"
CONFIG = "config"


# URI schemes orbax can write checkpoints to (see the module docstring); local paths always work.
CHECKPOINT_SCHEMES = ("gs",)


def check_checkpoint_path(path: str | os.PathLike, what: str) -> None:
    """Raises ValueError naming `what` (e.g. '--workdir') when orbax cannot write checkpoints at `path`."""
    scheme = paths.scheme(path)
    if scheme is not None and scheme not in CHECKPOINT_SCHEMES:
        raise ValueError(
            f"{what}={os.fspath(path)}: orbax writes checkpoints to local folders and "
            f"{', '.join(s + '://' for s in CHECKPOINT_SCHEMES)} only (its array data goes through TensorStore, "
            f"which would write {scheme}:// paths into a local folder named '{scheme}:'); use a gs:// bucket or a "
            f"mounted filesystem")


def phase_directory(workdir: str | os.PathLike, phase: str) -> epath.Path:
    """<workdir>/checkpoints/<phase>, local (made absolute) or gs://."""
    check_checkpoint_path(workdir, "workdir")
    return paths.as_path(workdir) / "checkpoints" / phase


def create_manager(workdir: str | os.PathLike, phase: str, checkpoint_config: ml_collections.ConfigDict,
                   every_steps: int) -> ocp.CheckpointManager:
    """The phase's manager: saves every `every_steps` (forced saves at the end and on preemption),
    keeps the last `keep_last` and every `keep_every_steps`-th step (0: none)."""
    keep: list[Any] = [checkpoint_managers.LatestN(checkpoint_config.keep_last)]
    if checkpoint_config.keep_every_steps:
        keep.append(checkpoint_managers.EveryNSteps(checkpoint_config.keep_every_steps))
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=checkpoint_managers.AnySavePolicy([
            checkpoint_managers.FixedIntervalPolicy(every_steps),
            checkpoint_managers.PreemptionCheckpointingPolicy(),
        ]),
        preservation_policy=checkpoint_managers.AnyPreservationPolicy(keep),
        cleanup_tmp_directories=True,
    )
    return ocp.CheckpointManager(phase_directory(workdir, phase), options=options)


def save(manager: ocp.CheckpointManager, step: int, networks: dict[str, Any], progress: Any,
         data_iterator: Any | None, config: ml_collections.ConfigDict, force: bool = False) -> bool:
    """Saves one step asynchronously. networks: name -> NetState pytree; progress: small pytree
    (guard etc.); data_iterator: a grain iterator or None. Returns whether a save started."""
    items = {name: ocp.args.StandardSave(state) for name, state in networks.items()}
    items[PROGRESS] = ocp.args.StandardSave(progress)
    items[CONFIG] = ocp.args.JsonSave(json.loads(config.to_json_best_effort()))
    if data_iterator is not None:
        items[DATA] = grain.checkpoint.CheckpointSave(data_iterator)
    return manager.save(step, args=ocp.args.Composite(**items), force=force)


def restore(manager: ocp.CheckpointManager, step: int, abstract_networks: dict[str, Any], abstract_progress: Any,
            data_iterator: Any | None) -> tuple[dict[str, Any], Any]:
    """Restores the named networks and progress onto the shardings their abstract targets carry;
    restores the data iterator's position in place. Returns (networks, progress)."""
    items = {name: ocp.args.StandardRestore(target) for name, target in abstract_networks.items()}
    items[PROGRESS] = ocp.args.StandardRestore(abstract_progress)
    if data_iterator is not None:
        items[DATA] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    return {name: restored[name] for name in abstract_networks}, restored[PROGRESS]


def find_latest(path: str | os.PathLike, phase_hint: str | None = None) -> tuple[epath.Path, int]:
    """Locates a checkpoint: `path` (local or gs://) is a workdir (its `checkpoints/<phase_hint>`), a phase
    directory, or a step directory. Returns (phase directory, step)."""
    check_checkpoint_path(path, "checkpoint path")
    path = paths.as_path(path)
    candidates = [path]
    if phase_hint:
        candidates.insert(0, phase_directory(path, phase_hint))
    for candidate in candidates:
        if candidate.name.isdigit() and candidate.is_dir() and candidate.parent.is_dir():
            return candidate.parent, int(candidate.name)
        if candidate.is_dir():
            steps = ocp.utils.checkpoint_steps(candidate) if hasattr(ocp, "utils") else []
            if steps:
                return candidate, max(steps)
    hint = f", or checkpoints/{phase_hint}" if phase_hint else ""
    raise FileNotFoundError(f"{path}: no finished checkpoint found (looked for a step directory, a phase "
                            f"directory with step subdirectories{hint})")


def restore_network(path: str | os.PathLike, name: str, abstract_state: Any, phase_hint: str | None = None) -> Any:
    """Restores one network's item (e.g. 'generator') from the latest checkpoint at `path`, and nothing
    else (no optimiser state of other networks, no data iterator). `abstract_state` is the target pytree
    of ShapeDtypeStructs with shardings, a dict holding a subset of the item's top-level entries
    (e.g. {'params': ...}, or also 'batch_stats'): only those are read."""
    directory, step = find_latest(path, phase_hint)
    item_dir = directory / str(step) / name
    if not item_dir.is_dir():
        present = sorted(p.name for p in (directory / str(step)).iterdir() if p.is_dir())
        raise FileNotFoundError(f"{directory / str(step)}: checkpoint has no {name!r} item (it has {present})")
    handler = ocp.PyTreeCheckpointHandler()
    try:
        return handler.restore(item_dir, args=ocp.args.PyTreeRestore(
            item=abstract_state, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state),
            partial_restore=True))
    finally:
        handler.close()


def read_config(path: str | os.PathLike, phase_hint: str | None = None) -> dict[str, Any]:
    """The config JSON stored with the latest checkpoint at `path`."""
    directory, step = find_latest(path, phase_hint)
    config_file = directory / str(step) / CONFIG / "metadata"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file.parent}: checkpoint has no stored config")
    return json.loads(config_file.read_text())


def wait(manager: ocp.CheckpointManager) -> None:
    """Blocks until pending asynchronous saves are on disk (call before exiting)."""
    manager.wait_until_finished()


def abstract_of(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of a pytree of arrays."""
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree)
