"""Training batches from a prepared CelebAMask-HQ (or synthetic) TFDS dataset, with grain.

Data flow, per process:
    tfds.data_source(name, split)                    ArrayRecord, random access
    -> InMemorySource (optional, `cache_decoded`): each decoded example kept after its first read
    -> grain IndexSampler: this process's shard, shuffled with `shuffle_seed`, repeated forever
    -> RandomFlip (optional): per-example seeded horizontal flip that also swaps left/right labels
    -> ToModelInputs: image float32 [-1, 1], mask int32 (H, W), attributes int32 (40,) in {0, 1}
    -> Batch(per-process batch, drop_remainder=True)
    -> global jax.Arrays: jax.make_array_from_process_local_data(NamedSharding(mesh, P(data_axis)))
    -> mask_ref = the global mask batch rolled by one (see `GlobalBatchIterator`).

The split is cut into `num_shards` logical shards (contiguous equal pieces, remainder dropped);
each process reads its own shards, so this assumes the batch axes span the processes (data
parallelism across hosts). The iterator state (`get_state`/`set_state`, bytes) can be saved with
Orbax through grain's handler: `grain.checkpoint.CheckpointSave(iterator)` /
`grain.checkpoint.CheckpointRestore(iterator)`; a restored iterator yields exactly the batches
the original would have, flips included (each example's flip is drawn from its sampler index).

Config fields (`default_config()`; a `ml_collections.ConfigDict`):
    name          TFDS name with config, e.g. 'celebamask_hq/first28k_64'.
    data_dir      TFDS data dir holding the prepared dataset (None: TFDS's default).
    split         TFDS split string, e.g. 'train' or 'train[:90%]'.
    batch_size    global batch size, split evenly over processes; at least 2 (see mask_ref).
    shuffle_seed  seed of the shuffle and of the flips, an int in [0, 2**32).
    random_flip   horizontal flip with probability 1/2, swapping l/r eye, brow and ear labels.
    worker_count  grain worker processes (0: decode in this process's threads). Workers need
                  parsed absl flags (absl.app.run) and a `__main__` guard.
    read_threads  threads that read and decode examples ahead of the loop (grain.ReadOptions
                  num_threads; 0: read on demand in the calling thread).
    prefetch_buffer_size
                  examples those threads read ahead (grain.ReadOptions; 0 with read_threads 0).
    cache_decoded keep every decoded example in host memory after its first read, so later epochs
                  skip reading and decoding (TFDS's per-feature parsing costs ~2 ms an example in
                  Python). For datasets that fit: the quickstart's 2,000 faces at 64 px take ~35 MB;
                  CelebAMask-HQ at 512 px would take ~30 GB a host.
    num_shards    logical data shards (None: one per JAX process). Each shard is read by its own
                  grain loader with batch `batch_size // num_shards`; process p reads shards
                  [p * k, (p + 1) * k), k = num_shards // processes, and the global batch is the
                  shards' batches in shard order. With num_shards fixed, the global batches are the
                  same whatever the number of processes (a 2-host run equals a 1-host run).
"""

from __future__ import annotations

import json
from typing import Any

import grain
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

import tfds_celebamask
from maskgan_jax.sharding import DATA_AXIS
from tfds_celebamask.labels import ATTRIBUTE_NAMES, flip_example

tfds_celebamask.register()  # tfds.data_source finds celebamask_hq by name


def default_config() -> ml_collections.ConfigDict:
    """The input pipeline's config fields with defaults; see the module docstring."""
    return ml_collections.ConfigDict({
        "name": "celebamask_hq/first28k_256",
        "data_dir": None,
        "split": "train",
        "batch_size": 8,
        "shuffle_seed": 0,
        "random_flip": True,
        "worker_count": 0,
        "read_threads": 16,
        "prefetch_buffer_size": 500,
        "cache_decoded": False,
        "num_shards": None,
    })


# ----------------------------------------------------------------------------- per example


class InMemorySource:
    """A random-access data source that keeps each example of `source` after its first read.

    grain has no random-access cache (grain.experimental.CacheIterDataset replays an iterator's first
    pass, which would freeze the shuffle order), hence this wrapper. Examples are returned as read
    (the same objects each time): the transforms after it must not modify them in place (they copy).
    Concurrent reads of a missing index may decode it twice; the result is the same.
    """

    def __init__(self, source):
        self._source = source
        self._examples: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> Any:
        example = self._examples.get(index)
        if example is None:
            example = self._examples[index] = self._source[index]
        return example

    def __repr__(self) -> str:
        # grain stores the source's repr in the iterator state and checks it on restore: no counts here.
        return f"InMemorySource({self._source!r})"


class RandomFlip(grain.transforms.RandomMap):
    """With probability 1/2 applies `flip_example` to the 'image' and 'mask' of an example."""

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if rng.random() < 0.5:
            element = dict(element)
            element["image"], element["mask"] = flip_example(element["image"], element["mask"])
        return element


class ToModelInputs(grain.transforms.Map):
    """TFDS example -> {'image': float32 (H, W, 3) in [-1, 1], 'mask': int32 (H, W) in [0, 19),
    'attributes': int32 (40,) in {0, 1}, labels.ATTRIBUTE_NAMES order (1: present)}."""

    def map(self, element: dict[str, Any]) -> dict[str, np.ndarray]:
        image = element["image"].astype(np.float32) / np.float32(127.5) - np.float32(1)  # 255 -> 1 exactly
        mask = np.asarray(element["mask"], np.int32)
        if mask.ndim == 3:  # TFDS masks are (H, W, 1)
            mask = mask[..., 0]
        return {"image": image, "mask": np.ascontiguousarray(mask), "attributes": attribute_vector(element)}


def attribute_vector(element: dict[str, Any]) -> np.ndarray:
    """The example's 40 attributes ({name: bool} in TFDS) as int32 (40,) in {0, 1}, ATTRIBUTE_NAMES order."""
    attributes = element.get("attributes")
    if attributes is None:
        raise KeyError(f"the example has no 'attributes' (keys: {sorted(element)}); the attribute classifier "
                       "needs the CelebAMask-HQ builder's 40 attributes")
    return np.array([bool(attributes[name]) for name in ATTRIBUTE_NAMES], np.int32)


# ----------------------------------------------------------------------------- per process


def _check_config(config: ml_collections.ConfigDict, shard_count: int) -> int:
    """Validates the config; returns the per-process batch size."""
    if config.batch_size < 2:
        raise ValueError(
            f"config.batch_size={config.batch_size}: expected a global batch of at least 2, so that "
            "mask_ref (the batch rolled by one) comes from another example."
        )
    if config.batch_size % shard_count:
        raise ValueError(
            f"config.batch_size={config.batch_size} must be divisible by the number of data shards "
            f"(processes), {shard_count}."
        )
    if not isinstance(config.shuffle_seed, int) or not 0 <= config.shuffle_seed < 2**32:
        raise ValueError(f"config.shuffle_seed={config.shuffle_seed!r}: expected an int in [0, 2**32).")
    return config.batch_size // shard_count


def create_data_loader(
    config: ml_collections.ConfigDict, shard_options: grain.sharding.ShardOptions
) -> grain.DataLoader:
    """A grain DataLoader of this shard's batches, as NumPy.

    Each batch: {'image': float32 (b, H, W, 3) in [-1, 1], 'mask': int32 (b, H, W), 'attributes': int32
    (b, 40)}, with
    b = config.batch_size // shard_options.shard_count. Endless (repeats the split), shuffled
    with config.shuffle_seed; shards are contiguous, equal, disjoint pieces of the split.
    """
    local_batch_size = _check_config(config, shard_options.shard_count)
    source = tfds.data_source(config.name, split=config.split, data_dir=config.data_dir, download=False)
    if len(source) < shard_options.shard_count:
        raise ValueError(
            f"{config.name} split {config.split!r} has {len(source)} examples, fewer than the "
            f"{shard_options.shard_count} data shards."
        )
    sampler = grain.samplers.IndexSampler(
        num_records=len(source),
        shard_options=shard_options,
        shuffle=True,
        num_epochs=None,
        seed=config.shuffle_seed,
    )
    operations = [RandomFlip()] if config.random_flip else []
    operations += [ToModelInputs(), grain.transforms.Batch(local_batch_size, drop_remainder=True)]
    return grain.DataLoader(
        data_source=InMemorySource(source) if config.cache_decoded else source,
        sampler=sampler,
        operations=operations,
        worker_count=config.worker_count,
        shard_options=shard_options,
        read_options=grain.ReadOptions(num_threads=config.read_threads,
                                       prefetch_buffer_size=config.prefetch_buffer_size),
    )


# ----------------------------------------------------------------------------- global


class ShardLoaders:
    """This process's logical shards, one grain DataLoader iterator each, read in lockstep.

    `next()` concatenates the shards' batches in shard order. The state is every shard's grain state.
    """

    def __init__(self, iterators: list):
        self._iterators = iterators

    def __iter__(self) -> ShardLoaders:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batches = [next(it) for it in self._iterators]
        return {key: np.concatenate([b[key] for b in batches], axis=0) for key in batches[0]}

    def get_state(self) -> bytes:
        return json.dumps([it.get_state().decode("utf-8") for it in self._iterators]).encode("utf-8")

    def set_state(self, state: bytes) -> None:
        states = json.loads(state.decode("utf-8"))
        if len(states) != len(self._iterators):
            raise ValueError(f"data iterator state holds {len(states)} shards, this process reads "
                             f"{len(self._iterators)}: config.data.num_shards must not change on resume")
        for it, shard_state in zip(self._iterators, states):
            it.set_state(shard_state.encode("utf-8"))

    def start_prefetch(self) -> None:
        for it in self._iterators:
            if hasattr(it, "start_prefetch"):
                it.start_prefetch()


def process_shards(num_shards: int | None) -> list[grain.sharding.ShardOptions]:
    """The logical shards this JAX process reads (see `num_shards` in the module docstring)."""
    processes, index = jax.process_count(), jax.process_index()
    num_shards = num_shards or processes
    if num_shards % processes:
        raise ValueError(f"config.num_shards={num_shards} must be a multiple of the {processes} JAX processes")
    per_process = num_shards // processes
    return [grain.sharding.ShardOptions(shard_index=index * per_process + i, shard_count=num_shards,
                                        drop_remainder=True) for i in range(per_process)]


def make_global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh, data_axis) -> dict[str, jax.Array]:
    """Assembles every process's local batch into global arrays sharded along `data_axis`.

    Args:
      local_batch: {'image': (b, H, W, 3), 'mask': (b, H, W)} of this process.
      mesh: the device mesh; `data_axis` names the mesh axis the batch dimension is split over.
    Returns:
      {'image': float32 (B, H, W, 3), 'mask': int32 (B, H, W)} with B = b * processes, each
      with sharding NamedSharding(mesh, P(data_axis)).
    """
    sharding = NamedSharding(mesh, P(data_axis))
    return {key: jax.make_array_from_process_local_data(sharding, value) for key, value in local_batch.items()}


def roll_batch_by_one(mesh: Mesh, data_axis: str):
    """A jitted x -> roll(x, 1, axis=0) for arrays sharded P(data_axis) over `mesh`
    (`data_axis`: a mesh axis name or a tuple of them).

    out[i] = x[(i - 1) mod B]. Each shard passes its last row to the next shard (one ppermute)
    and shifts its own rows; `jnp.roll` itself cannot slice a dimension split over Explicit mesh
    axes. The result keeps the sharding NamedSharding(mesh, P(data_axis)).
    """
    axes = data_axis if isinstance(data_axis, tuple) else (data_axis,)
    shard_count = int(np.prod([mesh.shape[a] for a in axes]))
    to_next_shard = [(i, (i + 1) % shard_count) for i in range(shard_count)]

    def roll_local_rows(rows):
        from_previous_shard = jax.lax.ppermute(rows[-1:], data_axis, to_next_shard)
        return jnp.concatenate([from_previous_shard, rows[:-1]], axis=0)

    return jax.jit(jax.shard_map(roll_local_rows, mesh=mesh, in_specs=P(data_axis), out_specs=P(data_axis)))


class GlobalBatchIterator:
    """Endless iterator of global training batches, checkpointable with grain/Orbax.

    `next()` returns {'image': float32 (B, H, W, 3) in [-1, 1], 'mask': int32 (B, H, W),
    'mask_ref': int32 (B, H, W), 'attributes': int32 (B, 40) in {0, 1}}, all sharded
    NamedSharding(mesh, P(data_axis)).

    mask_ref[i] = mask[(i - 1) mod B]: the global batch rolled by one, so each example's
    reference mask belongs to another example of the batch, hence another face: a shuffled
    epoch holds each face once (only a batch that straddles an epoch boundary can hold a face
    twice, which needs a split barely larger than the batch). Rolling the global rather than the
    local batch keeps this true with one example per process; on a sharded batch the roll moves
    one example per shard between neighbouring devices.

    State: `get_state()` -> bytes and `set_state(bytes)` are those of the grain DataLoader
    iterator of this process; `grain.checkpoint.CheckpointSave(self)` /
    `CheckpointRestore(self)` save and restore it with Orbax (one file per process).
    """

    def __init__(self, local_iterator, mesh: Mesh, data_axis: str):
        self._local_iterator = local_iterator
        self._mesh = mesh
        self._data_axis = data_axis
        self._roll = roll_batch_by_one(mesh, data_axis)

    def __iter__(self) -> GlobalBatchIterator:
        return self

    def __next__(self) -> dict[str, jax.Array]:
        batch = make_global_batch(next(self._local_iterator), self._mesh, self._data_axis)
        batch["mask_ref"] = self._roll(batch["mask"])
        return batch

    def get_state(self) -> bytes:
        return self._local_iterator.get_state()

    def set_state(self, state: bytes) -> None:
        self._local_iterator.set_state(state)

    def start_prefetch(self) -> None:
        """Called by grain's Orbax handler after a restore."""
        self._local_iterator.start_prefetch()


def create_iterator(
    config: ml_collections.ConfigDict,
    mesh: Mesh,
    data_axis=DATA_AXIS,
    shard_options: list[grain.sharding.ShardOptions] | None = None,
) -> GlobalBatchIterator:
    """The training input: global batches from `config` (see the module docstring).

    Args:
      config: input pipeline config (`default_config()` fields).
      mesh: device mesh; the batch dimension is split over `data_axis`.
      data_axis: the mesh axis (or tuple of axes) the batch is split over.
      shard_options: the logical shards this process reads; default: `process_shards(config.num_shards)`.
    """
    shard_options = shard_options or process_shards(config.num_shards)
    loaders = [iter(create_data_loader(config, options)) for options in shard_options]
    return GlobalBatchIterator(ShardLoaders(loaders), mesh, data_axis)
