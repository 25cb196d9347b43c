"""VGG19Features and the weight converter against Keras' own VGG19 (random weights, TF backend)."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import sys

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maskgan_jax import convert_vgg19
from maskgan_jax.models import vgg as vgg_lib

# Keras' own convert_to_numpy trips NumPy 2's __array__(copy=) deprecation: third-party noise.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

_REFERENCE_SIZE = 512
_PARAMS_UP_TO_CONV5_1 = 12_944_960  # Keras VGG19 notop (20,024,384) minus conv5_2..conv5_4
_KERAS_CONVS = [f"block{b}_conv{i}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
                for i in range(1, n + 1)]


@pytest.fixture(scope="module")
def keras_vgg(tmp_path_factory):
    """A random-weight Keras VGG19 (non-zero biases), its files and its relu{1..5}_1 on an input."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.VGG19(weights=None, include_top=False, input_shape=(32, 32, 3))
    rng = np.random.default_rng(0)
    for name in _KERAS_CONVS:  # Keras initialises biases to 0; make them count
        layer = model.get_layer(name)
        layer.bias.assign(rng.normal(0.0, 0.1, layer.bias.shape).astype(np.float32))
    directory = tmp_path_factory.mktemp("keras_vgg")
    files = {"weights_h5": str(directory / "vgg.weights.h5"),
             "legacy_h5": str(directory / "vgg.h5"), "keras_zip": str(directory / "vgg.keras")}
    model.save_weights(files["weights_h5"])
    model.save(files["legacy_h5"])
    model.save(files["keras_zip"])
    images = rng.uniform(-1.0, 1.0, (1, 32, 32, 3)).astype(np.float32)
    probe = keras.Model(model.input,
                        [model.get_layer(f"block{b}_conv1").output for b in range(1, 6)])
    activations = [keras.ops.convert_to_numpy(a) for a in probe(images)]
    kernels = {name: keras.ops.convert_to_numpy(model.get_layer(name).kernel)
               for name in _KERAS_CONVS}
    return {"files": files, "images": images, "activations": activations, "kernels": kernels,
            "dir": directory}


def _random_params(seed):
    """He-scaled random VGG19 parameters (NumPy: far faster than flax init of 13M on CPU)."""
    rng = np.random.default_rng(seed)
    return {layer: {"kernel": rng.normal(0.0, np.sqrt(2.0 / (9 * shapes["kernel"][2])),
                                         shapes["kernel"]).astype(np.float32),
                    "bias": rng.normal(0.0, 0.1, shapes["bias"]).astype(np.float32)}
            for layer, shapes in vgg_lib.vgg19_param_shapes().items()}


def _max_relative_error(actual, expected):
    return float(np.max(np.abs(np.asarray(actual) - expected)) / np.max(np.abs(expected)))


def test_converted_keras_weights_reproduce_keras_activations(keras_vgg, capsys):
    out = str(keras_vgg["dir"] / "from_cli.npz")
    keras_h5 = keras_vgg["files"]["weights_h5"]
    assert convert_vgg19.main([f"--keras_h5={keras_h5}", f"--out={out}"]) == 0
    assert "input_mode: caffe" in capsys.readouterr().out
    params = vgg_lib.load_vgg19_params(out)
    features = jax.jit(vgg_lib.VGG19Features().apply)({"params": params}, keras_vgg["images"])
    assert len(features) == len(vgg_lib.FEATURE_NAMES) == 5
    for name, ours, theirs in zip(vgg_lib.FEATURE_NAMES, features, keras_vgg["activations"]):
        assert ours.shape == theirs.shape, name
        assert np.max(theirs) > 0, name  # the check would be empty on an all-dead layer
        assert _max_relative_error(ours, theirs) < 1e-4, name


def test_every_keras_layout_converts_to_the_same_arrays(keras_vgg, tmp_path):
    reference = convert_vgg19.from_keras_h5(keras_vgg["files"]["weights_h5"])
    np.testing.assert_array_equal(reference["conv3_2/kernel"], keras_vgg["kernels"]["block3_conv2"])
    # What Keras 3 writes with model.save('x.h5') and model.save('x.keras').
    written = [keras_vgg["files"]["legacy_h5"], keras_vgg["files"]["keras_zip"]]
    # The official notop layouts: root groups per layer listing their datasets in 'weight_names'.
    for style in ("{0}/kernel:0", "{0}_W_1:0"):
        path = str(tmp_path / f"official_{len(written)}.h5")
        with h5py.File(path, "w") as h5:
            h5.attrs["layer_names"] = [b"input_1", *[n.encode() for n in _KERAS_CONVS]]
            h5.create_group("input_1").attrs["weight_names"] = np.array([], dtype="S1")
            for name in _KERAS_CONVS:
                layer = name.replace("block", "conv").replace("_conv", "_")
                group = h5.create_group(name)
                kernel_name = style.format(name)
                bias_name = kernel_name.replace("kernel", "bias").replace("_W_", "_b_")
                group.attrs["weight_names"] = [kernel_name.encode(), bias_name.encode()]
                if layer in vgg_lib.vgg19_param_shapes():
                    group[kernel_name] = reference[f"{layer}/kernel"]
                    group[bias_name] = reference[f"{layer}/bias"]
                else:  # conv5_2..5_4: present in the file, not converted
                    group[kernel_name] = keras_vgg["kernels"][name]
                    group[bias_name] = np.zeros(keras_vgg["kernels"][name].shape[-1], np.float32)
        written.append(path)
    # A Keras 3 .weights.h5 whose 'vars' groups carry no layer name (saved order decides).
    unnamed = str(tmp_path / "unnamed.weights.h5")
    with h5py.File(keras_vgg["files"]["weights_h5"]) as source, h5py.File(unnamed, "w") as h5:
        for key in source:
            source.copy(source[key], h5, key)
        named_groups = []
        h5.visititems(lambda _, obj: named_groups.append(obj) if "name" in obj.attrs else None)
        for group in named_groups:
            del group.attrs["name"]
    written.append(unnamed)
    for path in written:
        converted = convert_vgg19.from_keras_h5(path)
        assert converted.keys() == reference.keys(), path
        for key in reference:
            np.testing.assert_array_equal(converted[key], reference[key], err_msg=f"{path}: {key}")


def test_torchvision_state_dict_converts_to_the_keras_arrays(keras_vgg, tmp_path):
    reference = convert_vgg19.from_keras_h5(keras_vgg["files"]["weights_h5"])
    state_dict = {"classifier.6.bias": np.zeros(1000, np.float32)}  # not a conv: ignored
    for layer, index in convert_vgg19.TORCHVISION_FEATURE_INDEX.items():
        state_dict[f"features.{index}.weight"] = np.ascontiguousarray(
            reference[f"{layer}/kernel"].transpose(3, 2, 0, 1))  # HWIO -> OIHW, as torch stores it
        state_dict[f"features.{index}.bias"] = reference[f"{layer}/bias"]
    state_path, out = str(tmp_path / "torch_sd.npz"), str(tmp_path / "from_torch")
    np.savez(state_path, **state_dict)
    assert convert_vgg19.main([f"--torch_state_dict={state_path}", f"--out={out}"]) == 0
    with np.load(out + ".npz") as converted:
        assert sorted(converted.files) == sorted(reference)
        for key in reference:
            np.testing.assert_array_equal(converted[key], reference[key], err_msg=key)

    del state_dict["features.21.bias"]
    with pytest.raises(ValueError, match=r"'features\.21\.bias'.*conv4_2"):
        convert_vgg19.from_torchvision_state_dict(state_dict)


def test_pth_without_torch_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match=r"vgg19\.pth.*needs PyTorch"):
        convert_vgg19.load_torchvision_state_dict(str(tmp_path / "vgg19.pth"))


def test_loader_and_converter_errors_name_file_and_key(keras_vgg, tmp_path):
    reference = convert_vgg19.from_keras_h5(keras_vgg["files"]["weights_h5"])
    missing = str(tmp_path / "missing_key.npz")
    np.savez(missing, **{k: v for k, v in reference.items() if k != "conv4_1/bias"})
    with pytest.raises(ValueError, match=r"missing_key\.npz.*'conv4_1/bias'.*convert_vgg19"):
        vgg_lib.load_vgg19_params(missing)

    misshaped = str(tmp_path / "misshaped.npz")
    np.savez(misshaped, **{**reference, "conv2_1/kernel": reference["conv2_1/kernel"][:, :, :32]})
    with pytest.raises(ValueError, match=r"misshaped\.npz.*'conv2_1/kernel'.*\(3, 3, 32, 128\).*"
                                         r"\(3, 3, 64, 128\)"):
        vgg_lib.load_vgg19_params(misshaped)

    with pytest.raises(FileNotFoundError, match=r"nowhere\.npz.*convert_vgg19"):
        vgg_lib.load_vgg19_params(str(tmp_path / "nowhere.npz"))

    truncated = str(tmp_path / "truncated.h5")
    with h5py.File(truncated, "w") as h5:
        h5.create_group("block1_conv1/block1_conv1")["kernel:0"] = reference["conv1_1/kernel"]
        h5["block1_conv1/block1_conv1/bias:0"] = reference["conv1_1/bias"]
    with pytest.raises(ValueError, match=r"truncated\.h5.*no layer 'block1_conv2'"):
        convert_vgg19.from_keras_h5(truncated)


@pytest.mark.parametrize("input_mode", ["imagenet", "caffe"])
def test_input_modes_match_a_numpy_preprocessing(input_mode):
    rng = np.random.default_rng(1)
    images = rng.uniform(-1.0, 1.0, (2, 16, 16, 3))
    unit = (images + 1.0) / 2.0
    if input_mode == "imagenet":
        expected = (unit - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    else:
        expected = unit[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
    got = vgg_lib.preprocess_input(jnp.asarray(images, jnp.float32), input_mode)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)

    # The module applies it: mode M on images == mode 'raw' on the preprocessed images.
    params = _random_params(2)
    with_mode = vgg_lib.VGG19Features(input_mode=input_mode).apply(
        {"params": params}, jnp.asarray(images, jnp.float32))
    raw = vgg_lib.VGG19Features(input_mode="raw").apply(
        {"params": params}, jnp.asarray(expected, jnp.float32))
    for a, b in zip(with_mode, raw):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(b))))
    with pytest.raises(ValueError, match="'bgr'"):
        vgg_lib.preprocess_input(jnp.zeros((1, 2, 2, 3)), "bgr")


def test_reference_size_shapes_and_params_without_allocation():
    module = vgg_lib.VGG19Features()
    images = jax.ShapeDtypeStruct((2, _REFERENCE_SIZE, _REFERENCE_SIZE, 3), jnp.float32)
    variables = jax.eval_shape(module.init, jax.random.key(0), images)
    shapes = jax.tree.map(lambda a: a.shape, variables["params"])
    assert shapes == vgg_lib.vgg19_param_shapes()  # the tree load_vgg19_params checks and returns
    assert sum(a.size for a in jax.tree.leaves(variables)) == _PARAMS_UP_TO_CONV5_1
    features = jax.eval_shape(module.apply, variables, images)
    assert [f.shape for f in features] == [(2, 512, 512, 64), (2, 256, 256, 128),
                                           (2, 128, 128, 256), (2, 64, 64, 512), (2, 32, 32, 512)]
