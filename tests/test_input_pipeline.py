"""The grain input pipeline on a tiny dataset built from the builder's dummy_data.

The dataset is celebamask_hq/first28k_64 of dummy_data: 4 train images (ids 0, 1, 2, 2001),
64x64, built once per module into a temporary data_dir.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import grain
import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

from maskgan_jax import input_pipeline
from tfds_celebamask import build as build_lib
from tfds_celebamask import labels
from tfds_celebamask.celebamask_hq import celebamask_hq_dataset_builder as cmhq

NAME = "celebamask_hq/first28k_64"
TRAIN_IDS = {0, 1, 2, 2001}
L_EYE, R_EYE, L_BROW, R_BROW, L_EAR, R_EAR = (
    labels.CLASS_ID[n] for n in ("l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear"))
SKIN, HAIR = labels.CLASS_ID["skin"], labels.CLASS_ID["hair"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> pathlib.Path:
    data_dir = tmp_path_factory.mktemp("tfds")
    build_lib.build("first28k_64", pathlib.Path(cmhq.__file__).parent / "dummy_data", data_dir)
    return data_dir


@pytest.fixture(scope="module")
def source_examples(data_dir) -> dict[int, dict]:
    """{image id: raw TFDS example} of the train split."""
    source = tfds.data_source(NAME, split="train", data_dir=data_dir)
    return {int(source[i]["image_id"]): source[i] for i in range(len(source))}


def make_config(data_dir, **overrides):
    config = input_pipeline.default_config()
    config.update(dict(name=NAME, data_dir=str(data_dir), split="train", batch_size=2, shuffle_seed=3,
                       random_flip=True, worker_count=0))
    config.update(overrides)
    return config


def identify(image: np.ndarray, mask: np.ndarray, source_examples) -> tuple[int, bool]:
    """(image id, flipped?) of a model-input example, by exact comparison with the source."""
    matches = []
    for image_id, ex in source_examples.items():
        original = ex["image"].astype(np.float64) / 127.5 - 1
        for flipped in (False, True):
            expected_image = original[:, ::-1] if flipped else original
            expected_mask = ex["mask"][..., 0].astype(np.int64)
            if flipped:  # independent of flip_example: swap the three pairs by hand
                expected_mask = expected_mask[:, ::-1].copy()
                swapped = expected_mask.copy()
                for a, b in ((L_EYE, R_EYE), (L_BROW, R_BROW), (L_EAR, R_EAR)):
                    swapped[expected_mask == a], swapped[expected_mask == b] = b, a
                expected_mask = swapped
            if np.allclose(image, expected_image, rtol=0, atol=1e-6) and np.array_equal(mask, expected_mask):
                matches.append((image_id, flipped))
    assert len(matches) == 1, f"expected exactly one matching source example, got {matches}"
    return matches[0]


# ----------------------------------------------------------------------------- per example


def test_flip_swaps_left_and_right_labels():
    # The person's left eye is on the image's right. Rows: brows, eyes, ears + skin + hair.
    mask = np.array([
        [R_BROW, 0, HAIR, L_BROW],
        [R_EYE, SKIN, SKIN, L_EYE],
        [R_EAR, SKIN, 0, L_EAR],
    ], np.uint8)[..., None]
    image = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3)
    flipped_image, flipped_mask = labels.flip_example(image, mask)
    expected_mask = np.array([
        [R_BROW, HAIR, 0, L_BROW],  # mirrored l_brow (now on the left) is the new r_brow
        [R_EYE, SKIN, SKIN, L_EYE],
        [R_EAR, 0, SKIN, L_EAR],
    ], np.uint8)[..., None]
    np.testing.assert_array_equal(flipped_mask, expected_mask)
    assert flipped_mask.dtype == np.uint8
    np.testing.assert_array_equal(flipped_image, image[:, [3, 2, 1, 0]])
    twice = labels.flip_example(flipped_image, flipped_mask)
    np.testing.assert_array_equal(twice[0], image)
    np.testing.assert_array_equal(twice[1], mask)


def test_random_flip_is_seeded_and_fair():
    element = {"image": np.arange(6, dtype=np.uint8).reshape(1, 2, 3),
               "mask": np.array([[[L_EYE], [SKIN]]], np.uint8), "image_id": 7}
    flip = input_pipeline.RandomFlip()
    flips = []
    for seed in range(400):
        out = flip.random_map(element, np.random.default_rng(seed))
        again = flip.random_map(element, np.random.default_rng(seed))
        np.testing.assert_array_equal(out["image"], again["image"])
        was_flipped = out["mask"][0, 1, 0] == R_EYE
        assert out["mask"][0, 0, 0] == (SKIN if was_flipped else L_EYE)
        np.testing.assert_array_equal(out["image"], element["image"][:, ::-1] if was_flipped else element["image"])
        flips.append(was_flipped)
    assert 0.4 < np.mean(flips) < 0.6
    assert element["mask"][0, 0, 0] == L_EYE  # the input is not modified in place


def test_to_model_inputs_ranges():
    attributes = {name: name in ("Smiling", "Young") for name in labels.ATTRIBUTE_NAMES}
    element = {"image": np.array([[[0, 255, 51]]], np.uint8), "mask": np.array([[[18]]], np.uint8),
               "attributes": attributes}
    out = input_pipeline.ToModelInputs().map(element)
    assert out["image"].dtype == np.float32 and out["mask"].dtype == np.int32
    np.testing.assert_array_equal(out["image"], np.array([[[-1.0, 1.0, 51 / 127.5 - 1]]], np.float32))
    np.testing.assert_array_equal(out["mask"], [[18]])
    assert set(out) == {"image", "mask", "attributes"}
    assert out["attributes"].dtype == np.int32 and out["attributes"].shape == (40,)
    assert [labels.ATTRIBUTE_NAMES[i] for i in np.flatnonzero(out["attributes"])] == ["Smiling", "Young"]
    del element["attributes"]
    with pytest.raises(KeyError, match="no 'attributes'"):
        input_pipeline.ToModelInputs().map(element)


# ----------------------------------------------------------------------------- shards


def test_two_processes_read_disjoint_shards_covering_the_split(data_dir, source_examples):
    config = make_config(data_dir, batch_size=2, random_flip=False)  # 1 example per process
    seen = {}
    for shard_index in (0, 1):
        shard = grain.sharding.ShardOptions(shard_index, 2, drop_remainder=True)
        loader = input_pipeline.create_data_loader(config, shard)
        iterator = iter(loader)
        ids = []
        for _ in range(6):  # three epochs of a 2-example shard
            batch = next(iterator)
            assert batch["image"].shape == (1, 64, 64, 3) and batch["mask"].shape == (1, 64, 64)
            ids.append(identify(batch["image"][0], batch["mask"][0], source_examples)[0])
        epochs = [set(ids[i:i + 2]) for i in (0, 2, 4)]
        assert epochs[0] == epochs[1] == epochs[2] and len(epochs[0]) == 2  # repeats its own shard
        seen[shard_index] = epochs[0]
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == TRAIN_IDS


def test_shuffle_follows_the_seed(data_dir, source_examples):
    def first_ids(seed):
        iterator = iter(input_pipeline.create_data_loader(
            make_config(data_dir, batch_size=4, random_flip=False, shuffle_seed=seed), grain.sharding.NoSharding()))
        return [identify(b["image"][i], b["mask"][i], source_examples)[0]
                for b in (next(iterator), next(iterator), next(iterator)) for i in range(4)]

    orders = {seed: first_ids(seed) for seed in (0, 1, 2, 3)}
    assert first_ids(1) == orders[1]
    for ids in orders.values():  # every epoch is a permutation of the split
        assert all(set(ids[i:i + 4]) == TRAIN_IDS for i in (0, 4, 8))
    assert len({tuple(ids) for ids in orders.values()}) > 1


def test_pipeline_flips_image_and_mask_together(data_dir, source_examples):
    iterator = iter(input_pipeline.create_data_loader(make_config(data_dir, batch_size=4), grain.sharding.NoSharding()))
    flipped = []
    for _ in range(8):
        batch = next(iterator)
        flipped += [identify(batch["image"][i], batch["mask"][i], source_examples)[1] for i in range(4)]
    assert 0 < sum(flipped) < len(flipped)  # both kinds occur in 32 draws


class CountingSource:
    """A random-access source that counts its reads per index."""

    def __init__(self, source):
        self.source, self.reads = source, {}

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        self.reads[index] = self.reads.get(index, 0) + 1
        return self.source[index]


def test_in_memory_source_reads_each_example_once(data_dir):
    counting = CountingSource(tfds.data_source(NAME, split="train", data_dir=data_dir))
    cached = input_pipeline.InMemorySource(counting)
    first = [cached[i] for i in range(len(cached))]
    again = [cached[i] for i in (3, 0, 2, 1, 0)]
    assert len(cached) == 4 and counting.reads == {0: 1, 1: 1, 2: 1, 3: 1}
    assert again[1] is first[0] and again[0] is first[3]


@pytest.mark.parametrize("read_threads,prefetch", [(0, 0), (2, 8)])
def test_cached_pipeline_yields_the_same_batches(data_dir, read_threads, prefetch):
    """Over three epochs (flips drawn per epoch), caching and the read options change no batch."""
    def batches(**overrides):
        config = make_config(data_dir, batch_size=2, random_flip=True, shuffle_seed=5, **overrides)
        iterator = iter(input_pipeline.create_data_loader(config, grain.sharding.NoSharding()))
        return [next(iterator) for _ in range(6)]

    want = batches()
    got = batches(cache_decoded=True, read_threads=read_threads, prefetch_buffer_size=prefetch)
    for w, g in zip(want, got):
        for key in ("image", "mask", "attributes"):
            np.testing.assert_array_equal(g[key], w[key])


def test_transforms_leave_cached_examples_unchanged(data_dir):
    """The cache hands out the same objects every epoch: the per-example transforms must copy."""
    cached = input_pipeline.InMemorySource(tfds.data_source(NAME, split="train", data_dir=data_dir))
    example = cached[0]
    image, mask = example["image"].copy(), example["mask"].copy()
    for seed in range(8):  # both flip outcomes occur in 8 draws (p = 1 - 2 * 2^-8)
        flipped = input_pipeline.RandomFlip().random_map(example, np.random.default_rng(seed))
        inputs = input_pipeline.ToModelInputs().map(flipped)
        inputs["image"] += 1
        inputs["mask"] += 1
    assert cached[0] is example
    np.testing.assert_array_equal(example["image"], image)
    np.testing.assert_array_equal(example["mask"], mask)


# ----------------------------------------------------------------------------- global batches


@pytest.mark.parametrize("axis_type", [jax.sharding.AxisType.Explicit, jax.sharding.AxisType.Auto])
def test_global_batch_on_one_device_mesh(data_dir, source_examples, axis_type):
    mesh = jax.make_mesh((1,), ("data",), axis_types=(axis_type,), devices=jax.devices()[:1])
    iterator = input_pipeline.create_iterator(make_config(data_dir, batch_size=3), mesh, "data")
    for step in range(2):
        batch = next(iterator)
        assert set(batch) == {"image", "mask", "mask_ref", "attributes"}
        for key, shape, dtype in (("image", (3, 64, 64, 3), np.float32), ("mask", (3, 64, 64), np.int32),
                                  ("mask_ref", (3, 64, 64), np.int32), ("attributes", (3, 40), np.int32)):
            assert isinstance(batch[key], jax.Array)
            assert batch[key].shape == shape and batch[key].dtype == dtype
            assert batch[key].sharding.is_equivalent_to(NamedSharding(mesh, P("data")), len(shape))
        image, mask, mask_ref = (np.asarray(batch[k]) for k in ("image", "mask", "mask_ref"))
        assert image.min() >= -1 and image.max() <= 1 and mask.min() >= 0 and mask.max() < labels.NUM_CLASSES
        np.testing.assert_array_equal(mask_ref, mask[[2, 0, 1]])  # mask_ref[i] = mask[i - 1]
        ids = [identify(image[i], mask[i], source_examples)[0] for i in range(3)]
        for i, image_id in enumerate(ids):  # each face's own attributes, in ATTRIBUTE_NAMES order
            want = [source_examples[image_id]["attributes"][name] for name in labels.ATTRIBUTE_NAMES]
            np.testing.assert_array_equal(np.asarray(batch["attributes"])[i], want)
        if step == 0:  # within one epoch, so every mask_ref comes from another face
            assert len(set(ids)) == 3


@pytest.mark.parametrize("cache_decoded", [False, True])
def test_iterator_state_restores_exactly(data_dir, tmp_path, cache_decoded):
    mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
    config = make_config(data_dir, batch_size=2, random_flip=True, shuffle_seed=11, cache_decoded=cache_decoded)
    original = input_pipeline.create_iterator(config, mesh)
    for _ in range(3):
        next(original)
    state = original.get_state()
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(original)))
        manager.wait_until_finished()
    expected = [jax.device_get(next(original)) for _ in range(5)]

    restored = input_pipeline.create_iterator(config, mesh)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(restored)))
    from_state = input_pipeline.create_iterator(config, mesh)
    from_state.set_state(state)
    fresh = input_pipeline.create_iterator(config, mesh)
    fresh_first = jax.device_get(next(fresh))
    for want in expected:
        for got in (jax.device_get(next(restored)), jax.device_get(next(from_state))):
            for key in ("image", "mask", "mask_ref"):
                np.testing.assert_array_equal(got[key], want[key])
    # The restore matters: a fresh iterator starts elsewhere in the stream.
    assert not np.array_equal(fresh_first["image"], expected[0]["image"])
    # One grain DataLoader state (JSON text) per logical shard.
    assert all(json.loads(shard)["last_seen_indices"] for shard in json.loads(state))


def test_global_batch_over_four_devices(data_dir):
    # A fresh process, since the device count is fixed when JAX starts.
    script = textwrap.dedent(f"""
        import jax, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from maskgan_jax import input_pipeline
        config = input_pipeline.default_config()
        config.update(dict(name={NAME!r}, data_dir={str(data_dir)!r}, batch_size=4, shuffle_seed=5))
        mesh = jax.make_mesh((4,), ("data",))
        batch = next(input_pipeline.create_iterator(config, mesh, "data"))
        for key in ("image", "mask", "mask_ref"):
            value = batch[key]
            assert value.sharding.is_equivalent_to(NamedSharding(mesh, P("data")), value.ndim), key
            assert sorted(s.data.shape[0] for s in value.addressable_shards) == [1, 1, 1, 1], key
        mask = np.asarray(batch["mask"])
        np.testing.assert_array_equal(np.asarray(batch["mask_ref"]), np.roll(mask, 1, axis=0))
        assert len({{m.tobytes() for m in mask}}) == 4
        # Two rows per shard, and a data axis beside a model axis (Auto this time).
        for shape, axes in (((4,), ("data",)), ((2, 2), ("data", "model"))):
            mesh = jax.make_mesh(shape, axes, axis_types=(jax.sharding.AxisType.Auto,) * len(axes))
            x = jax.device_put(np.arange(8 * 3).reshape(8, 3), NamedSharding(mesh, P("data")))
            rolled = input_pipeline.roll_batch_by_one(mesh, "data")(x)
            np.testing.assert_array_equal(np.asarray(rolled), np.roll(np.arange(8 * 3).reshape(8, 3), 1, axis=0))
            assert rolled.sharding.is_equivalent_to(NamedSharding(mesh, P("data")), 2)
        print("OK", len(jax.devices()))
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                            cwd=pathlib.Path(__file__).parent.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK 4")


# ----------------------------------------------------------------------------- config errors


@pytest.mark.parametrize("overrides, shard_count, message", [
    (dict(batch_size=1), 1, "at least 2"),
    (dict(batch_size=3), 2, "divisible by the number of data shards"),
    (dict(shuffle_seed=-1), 1, "shuffle_seed"),
])
def test_config_errors(data_dir, overrides, shard_count, message):
    with pytest.raises(ValueError, match=message):
        input_pipeline.create_data_loader(make_config(data_dir, **overrides),
                                          grain.sharding.ShardOptions(0, shard_count, drop_remainder=True))


def test_logical_shards_make_batches_independent_of_process_count(data_dir):
    """One process reading shards 0 and 1 of 2 yields what two processes (one shard each) yield together."""
    config = make_config(data_dir, batch_size=4, random_flip=True)
    shards = [grain.sharding.ShardOptions(i, 2, drop_remainder=True) for i in (0, 1)]
    one_process = input_pipeline.ShardLoaders(
        [iter(input_pipeline.create_data_loader(config, s)) for s in shards])
    per_process = [iter(input_pipeline.create_data_loader(config, s)) for s in shards]
    for _ in range(3):
        combined = next(one_process)
        parts = [next(it) for it in per_process]
        for key in ("image", "mask"):
            np.testing.assert_array_equal(combined[key], np.concatenate([p[key] for p in parts]))
    state = one_process.get_state()
    expected = next(one_process)
    restored = input_pipeline.ShardLoaders(
        [iter(input_pipeline.create_data_loader(config, s)) for s in shards])
    restored.set_state(state)
    np.testing.assert_array_equal(next(restored)["image"], expected["image"])
    with pytest.raises(ValueError, match="num_shards must not change"):
        input_pipeline.ShardLoaders([iter(input_pipeline.create_data_loader(config, shards[0]))]).set_state(state)


def test_process_shards_default_and_errors():
    assert [s.shard_index for s in input_pipeline.process_shards(None)] == [0]
    shards = [(s.shard_index, s.shard_count) for s in input_pipeline.process_shards(4)]
    assert shards == [(0, 4), (1, 4), (2, 4), (3, 4)]
