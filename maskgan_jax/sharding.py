"""The device mesh and the shardings of batches and train states.

Mesh axes: `data` (batch split, parameters replicated) and `fsdp` (batch split too, and each
parameter's largest divisible dimension sharded, ZeRO-3 style). The same code runs on one CPU, one
multi-GPU host, several hosts or a TPU pod slice: only the mesh shape in the config changes.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)  # the batch dimension is split over both


def create_mesh(mesh_config: ml_collections.ConfigDict, devices: list[jax.Device] | None = None) -> Mesh:
    """Builds the (data, fsdp) mesh; a size of -1 takes all devices the other axis leaves.

    Args:
      mesh_config: fields `data` and `fsdp` (ints, at most one of them -1).
      devices: defaults to jax.devices() (all processes' devices).
    """
    devices = list(devices if devices is not None else jax.devices())
    sizes = {DATA_AXIS: int(mesh_config.data), FSDP_AXIS: int(mesh_config.fsdp)}
    free = [name for name, size in sizes.items() if size == -1]
    if len(free) > 1:
        raise ValueError(f"config.mesh: at most one axis may be -1, got {sizes}")
    if free:
        other = int(np.prod([s for n, s in sizes.items() if n != free[0]]))
        if len(devices) % other:
            raise ValueError(f"config.mesh: {len(devices)} devices do not split into {sizes}")
        sizes[free[0]] = len(devices) // other
    if sizes[DATA_AXIS] * sizes[FSDP_AXIS] != len(devices):
        raise ValueError(f"config.mesh: {sizes} needs {sizes[DATA_AXIS] * sizes[FSDP_AXIS]} devices, "
                         f"found {len(devices)}")
    # Auto axes: jit propagates shardings from in_shardings/out_shardings through ordinary code.
    return jax.make_mesh((sizes[DATA_AXIS], sizes[FSDP_AXIS]), (DATA_AXIS, FSDP_AXIS),
                         axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over every device of the mesh."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _param_spec(shape: tuple[int, ...], fsdp_size: int) -> P:
    """Shards the largest dimension divisible by the fsdp axis (big_vision's fsdp rule); else replicates."""
    if fsdp_size == 1 or not shape:
        return P()
    for dim in np.argsort(shape)[::-1]:
        if shape[dim] % fsdp_size == 0 and shape[dim] >= fsdp_size:
            spec = [None] * len(shape)
            spec[dim] = FSDP_AXIS
            return P(*spec)
    return P()


def state_shardings(abstract_state: Any, mesh: Mesh, min_sharded_size: int = 2 ** 14) -> Any:
    """Shardings for a pytree of arrays (ShapeDtypeStructs): replicated, or fsdp-sharded when the mesh
    has an fsdp axis of size > 1. Tensors of fewer than `min_sharded_size` elements stay replicated."""
    fsdp_size = mesh.shape[FSDP_AXIS]

    def sharding(leaf):
        shape = tuple(getattr(leaf, "shape", ()))
        large = int(np.prod(shape, dtype=np.int64)) >= min_sharded_size
        spec = _param_spec(shape, fsdp_size) if large else P()
        return NamedSharding(mesh, spec)

    return jax.tree_util.tree_map(sharding, abstract_state)
