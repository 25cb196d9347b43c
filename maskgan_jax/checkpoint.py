"""Orbax checkpoints: one manager per phase, one item per network, plus the data iterator, progress
and the config.

Layout: <workdir>/checkpoints/<phase>/<step>/{generator, discriminator, mask_vae, blender, progress,
data, config}. Saves are asynchronous; Orbax writes each step into a temporary directory and renames
it when complete, so a run that dies mid-save leaves the previous checkpoint as the latest. Restores
always go against abstract targets that carry the current shardings, so a checkpoint written on 8
devices restores onto 1 and vice versa.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

PROGRESS = "progress"
DATA = "data"
CONFIG = "config"


def phase_directory(workdir: str | Path, phase: str) -> Path:
    return Path(workdir).absolute() / "checkpoints" / phase


def create_manager(workdir: str | Path, phase: str, checkpoint_config: ml_collections.ConfigDict,
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


def find_latest(path: str | Path, phase_hint: str | None = None) -> tuple[Path, int]:
    """Locates a checkpoint: `path` is a workdir (its `checkpoints/<phase_hint>`), a phase directory,
    or a step directory. Returns (phase directory, step)."""
    path = Path(path).absolute()
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


def restore_network(path: str | Path, name: str, abstract_state: Any, phase_hint: str | None = None) -> Any:
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


def read_config(path: str | Path, phase_hint: str | None = None) -> dict[str, Any]:
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
