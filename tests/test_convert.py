"""Importing the public PyTorch generator: the fixture is the public code's own output."""

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import maskgan_jax
from maskgan_jax import cli, convert, edit, mask_io
from maskgan_jax.convert import from_official_generator, load_state_dict
from maskgan_jax.models import one_hot_mask

FIXTURE = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def state_dict():
    return load_state_dict(FIXTURE / "state_dict.npz")


def test_imported_generator_reproduces_public_output(state_dict):
    module, variables = from_official_generator(state_dict)
    info = json.loads((FIXTURE / "info.json").read_text())
    assert (module.ngf, module.n_downsample, module.n_blocks) == (info["ngf"], info["n_downsample"], info["n_blocks"])
    io = np.load(FIXTURE / "io.npz")
    out = module.apply(variables, jnp.asarray(io["image_t"]), one_hot_mask(io["mask_t"]), one_hot_mask(io["mask_src"]))
    assert float(np.max(np.abs(np.asarray(out) - io["output"]))) < 1e-4
    assert float(np.max(np.abs(np.asarray(out) - io["output_fp64"]))) < 1e-4


def test_imported_parameter_count_matches_reference(state_dict):
    _, variables = from_official_generator(state_dict)
    info = json.loads((FIXTURE / "info.json").read_text())
    running_buffers = sum(v.size for k, v in state_dict.items() if "running_" in k)
    count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables))
    assert count == info["params"]
    assert count + running_buffers == sum(v.size for v in state_dict.values())


def test_rejects_missing_unexpected_and_misshaped_keys(state_dict):
    broken = dict(state_dict)
    del broken["enc_style.sft1.SFT_scale_conv1.bias"]
    broken["extra.weight"] = np.zeros(3)
    broken["model.33.bias"] = np.zeros(4)
    with pytest.raises(ValueError) as info:
        from_official_generator(broken)
    message = str(info.value)
    assert "missing keys: ['enc_style.sft1.SFT_scale_conv1.bias']" in message
    assert "unexpected keys: ['extra.weight']" in message
    assert "model.33.bias: (4,) given, (3,) expected" in message


def test_load_state_dict_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        load_state_dict(tmp_path / "nothing.npz")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"expected a \.npz or \.pth"):
        load_state_dict(tmp_path / "weights.bin")


# ----------------------------------------------------------------------------- the command line: a checkpoint on disk


def _quantised_inputs():
    """The fixture's inputs as files would hold them: the image as uint8, the masks as uint8 ids."""
    io = np.load(FIXTURE / "io.npz")
    image = np.round((io["image_t"][0] + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    return image, io["mask_t"][0].astype(np.uint8), io["mask_src"][0].astype(np.uint8)


def _reference_edit(state_dict, image, mask_t, mask_src):
    """from_official_generator on uint8 inputs, as uint8 (rounded): what every route must give to 1/255."""
    module, variables = from_official_generator(state_dict)
    out = module.apply(variables, jnp.asarray(image[None], jnp.float32) / 127.5 - 1.0, one_hot_mask(mask_t[None]),
                       one_hot_mask(mask_src[None]))
    return np.round((np.asarray(out[0], np.float64) + 1.0) * 127.5).clip(0, 255)


def test_convert_cli_then_maskgan_edit_and_the_api_give_the_imported_generator_output(
        tmp_path, state_dict, compilation_cache, capsys):
    checkpoint_dir = tmp_path / "official"
    assert convert.main([f"--state_dict={FIXTURE / 'state_dict.npz'}", f"--out={checkpoint_dir}",
                         "--resolution=64"]) == 0
    assert "941,715 parameters" in capsys.readouterr().out
    image, mask_t, mask_src = _quantised_inputs()
    expected = _reference_edit(state_dict, image, mask_t, mask_src)

    mask_io.write_image(tmp_path / "face.png", image)
    mask_io.write_mask(tmp_path / "face_mask.png", mask_t)
    mask_io.write_mask(tmp_path / "wanted.png", mask_src, palette=True)
    out = tmp_path / "edited.png"
    assert edit.main([f"--checkpoint={checkpoint_dir}", f"--image={tmp_path / 'face.png'}",
                      f"--mask={tmp_path / 'face_mask.png'}", f"--wanted={tmp_path / 'wanted.png'}", f"--out={out}",
                      f"--jax_cache_dir={compilation_cache}"]) == 0
    from_cli = mask_io.read_image(out)
    assert np.abs(from_cli - expected).max() <= 1

    editor = maskgan_jax.load_editor(checkpoint_dir)
    assert editor.resolution == 64 and editor.mask_vae is None and editor.parser is None
    from_api = editor.edit(image, mask_t, wanted=mask_src)
    np.testing.assert_array_equal(from_api, from_cli)
    # PIL in, numpy out; a batch of two in, a batch out.
    from_pil = editor.edit(Image.open(tmp_path / "face.png"), Image.open(tmp_path / "face_mask.png"),
                           wanted=Image.open(tmp_path / "wanted.png"))
    np.testing.assert_array_equal(from_pil, from_cli)
    batch = editor.edit(np.stack([image, image]), [mask_t, mask_t], wanted=mask_src)
    assert batch.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(batch[1], from_cli)


def _run_convert(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.run("python -m maskgan_jax.convert", convert.main, argv)
    return exit_info.value.code, capsys.readouterr()


def test_convert_cli_help_prints_usage(capsys):
    code, printed = _run_convert(["--help"], capsys)
    assert code == 0 and "--state_dict" in printed.out and "--resolution" in printed.out


@pytest.mark.parametrize("damage,expected", [
    ("missing", r"missing keys: \['enc_style.sft1.SFT_scale_conv1.bias'\]"),
    ("unexpected", r"unexpected keys: \['extra.weight'\]"),
    ("misshaped", r"model.1.weight: \(4, 19, 7, 5\) given, \(4, 19, 7, 7\) expected"),
    ("garbage", r"not a state_dict \.npz"),
    ("empty", r"empty file \(expected a state_dict\)"),
    ("array", r"not a state_dict"),
])
def test_convert_cli_errors_name_the_file_and_key_and_leave_nothing(tmp_path, state_dict, capsys, damage, expected):
    broken = dict(state_dict)
    bad_file = tmp_path / "weights.npz"
    if damage == "missing":
        del broken["enc_style.sft1.SFT_scale_conv1.bias"]
    elif damage == "unexpected":
        broken["extra.weight"] = np.zeros(3, np.float32)
    elif damage == "misshaped":
        broken["model.1.weight"] = np.zeros((4, 19, 7, 5), np.float32)
    if damage == "garbage":
        bad_file.write_bytes(b"PK\x03\x04 truncated zip")
    elif damage == "empty":
        bad_file.write_bytes(b"")
    elif damage == "array":
        np.save(tmp_path / "weights.npy", np.zeros(3))
        (tmp_path / "weights.npy").rename(bad_file)
    else:
        np.savez(bad_file, **broken)
    out = tmp_path / "out"
    code, printed = _run_convert([f"--state_dict={bad_file}", f"--out={out}", "--resolution=64"], capsys)
    assert code == 2
    assert printed.err.startswith(f"python -m maskgan_jax.convert: error: {bad_file}: ")
    assert re.search(expected, printed.err), printed.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.npz"]  # no --out, no temporary sibling


def test_convert_cli_refuses_an_existing_out_and_a_resolution_it_cannot_run(tmp_path, capsys):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    code, printed = _run_convert([f"--state_dict={FIXTURE / 'state_dict.npz'}", f"--out={existing}"], capsys)
    assert code == 2 and f"{existing}: already exists" in printed.err
    assert (existing / "keep.txt").read_text() == "mine"
    code, printed = _run_convert([f"--state_dict={FIXTURE / 'state_dict.npz'}", f"--out={tmp_path / 'new'}",
                                  "--resolution=40"], capsys)
    assert code == 2 and "--resolution=40" in printed.err and not (tmp_path / "new").exists()
    code, printed = _run_convert([f"--state_dict={tmp_path / 'absent.pth'}", f"--out={tmp_path / 'new'}"], capsys)
    assert code == 2 and "absent.pth: no such state_dict file" in printed.err


def test_convert_edit_and_the_api_on_a_gs_bucket(tmp_path, state_dict, compilation_cache, monkeypatch, capsys):
    """--out, --checkpoint, the inputs and load_editor take gs:// paths (a fake bucket: tests/fake_gcs.py)
    and give the local route's result; nothing lands in a local folder named 'gs:'."""
    from fake_gcs import fake_gcs

    monkeypatch.chdir(tmp_path)
    image, mask_t, mask_src = _quantised_inputs()
    expected = _reference_edit(state_dict, image, mask_t, mask_src)
    with fake_gcs(tmp_path / "bucket_root", monkeypatch) as root:
        assert convert.main([f"--state_dict={FIXTURE / 'state_dict.npz'}", "--out=gs://bucket/official",
                             "--resolution=64"]) == 0
        mask_io.write_image("gs://bucket/in/face.png", image)
        mask_io.write_mask("gs://bucket/in/face_mask.png", mask_t)
        mask_io.write_mask("gs://bucket/in/wanted.png", mask_src, palette=True)
        assert edit.main(["--checkpoint=gs://bucket/official", "--image=gs://bucket/in/face.png",
                          "--mask=gs://bucket/in/face_mask.png", "--wanted=gs://bucket/in/wanted.png",
                          "--out=gs://bucket/out/edited.png", f"--jax_cache_dir={compilation_cache}"]) == 0
        from_cli = mask_io.read_image("gs://bucket/out/edited.png")
        from_api = maskgan_jax.load_editor("gs://bucket/official").edit(image, mask_t, wanted=mask_src)
    assert np.abs(from_cli.astype(int) - expected).max() <= 1
    np.testing.assert_array_equal(from_api, from_cli)
    assert (root / "bucket" / "official").is_dir() and (root / "bucket" / "out" / "edited.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bucket_root"]  # no local 'gs:' folder
