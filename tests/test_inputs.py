"""Bad input files and arrays: one set of checks (maskgan_jax.inputs) for `maskgan-edit`, `maskgan-parse`
and the API, each ending in `<prog>: error: <file>: <what is wrong>` and exit status 2 (tested file by
file), never a traceback or a silently stretched mask."""

import re
import struct
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

import maskgan_jax
from configs import ebst as ebst_config
from maskgan_jax import checkpoint, cli, convert, edit, inputs, mask_io, parse
from maskgan_jax.models import registry
from maskgan_jax.state import NetState
from tfds_celebamask import synthetic

FIXTURE = Path(__file__).parent / "data"


def huge_png(path, width=20000, height=20000):
    """A valid PNG header claiming width x height (a few bytes on disk; decoding it would take GBs)."""
    buffer = Path(path)
    Image.new("L", (1, 1)).save(buffer)
    data = bytearray(buffer.read_bytes())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes of fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    buffer.write_bytes(bytes(data))
    return buffer


def _truncated_png(path, size=(64, 64)):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    return path


BAD_FILES = {
    "missing": (lambda p: p, r"no such (image |mask |wanted mask |--from mask )?file"),
    "empty": (lambda p: (p.write_bytes(b""), p)[1], r"empty file"),
    "garbage": (lambda p: (p.write_bytes(b"\x89PNG but not really"), p)[1], r"not a readable (image|mask) file"),
    "truncated": (_truncated_png, r"corrupt or truncated"),
    "huge": (huge_png, r"at most 67,108,864 pixels are read"),
    "big": (lambda p: huge_png(p, 9000, 9000), r"is 9000x9000 pixels; at most 67,108,864 pixels are read"),
}


@pytest.mark.parametrize("damage", sorted(BAD_FILES))
def test_open_image_file_names_the_file_and_the_problem(tmp_path, damage):
    make, expected = BAD_FILES[damage]
    path = make(tmp_path / "bad.png")
    error = FileNotFoundError if damage == "missing" else inputs.InputError
    with pytest.raises(error, match=expected) as info:
        inputs.open_image_file(path, "mask")
    assert str(info.value).startswith(str(path))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A converted 64 px generator, a parser checkpoint, and a good face with its masks as files."""
    root = tmp_path_factory.mktemp("inputs")
    convert.convert_to_checkpoint(FIXTURE / "state_dict.npz", root / "generator", resolution=64)
    config = ebst_config.get_config("smoke")
    module = registry.build_network(config, "parser")
    params = jax.jit(lambda key: registry.init_variables(config, "parser", module, key))(jax.random.key(0))["params"]
    manager = checkpoint.create_manager(root / "run", "parser", config.checkpoint, every_steps=1)
    checkpoint.save(manager, 1, {"parser": NetState(params, None, {})}, {"step": np.int32(1)}, None, config,
                    force=True)
    checkpoint.wait(manager)
    manager.close()
    geometry, style = synthetic.sample_face(synthetic.face_rng(3, 0))
    image, mask = synthetic.render(geometry, style, 64)
    mask_io.write_image(root / "face.png", image)
    mask_io.write_mask(root / "mask.png", mask)
    mask_io.write_mask(root / "wanted.png", mask[::-1])
    return root, image, mask


def _run(program, main, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.run(program, main, argv)
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("role", ["image", "mask", "wanted", "from"])
@pytest.mark.parametrize("damage", sorted(BAD_FILES))
def test_maskgan_edit_bad_file_exits_2_naming_it(tmp_path, files, capsys, compilation_cache, role, damage):
    root, _, _ = files
    make, expected = BAD_FILES[damage]
    bad = make(tmp_path / f"bad_{role}.png")
    given = {"image": root / "face.png", "mask": root / "mask.png", role: bad}
    argv = [f"--checkpoint={root / 'generator'}", f"--image={given['image']}", f"--mask={given['mask']}",
            f"--out={tmp_path / 'out.png'}", f"--jax_cache_dir={compilation_cache}"]
    if role == "from":
        argv += ["--transfer=hair", f"--from={bad}"]
    else:
        argv.append(f"--wanted={given.get('wanted', root / 'wanted.png')}")
    code, err = _run("maskgan-edit", edit.main, argv, capsys)
    assert code == 2, err
    assert err.startswith(f"maskgan-edit: error: {bad}") and err.count("\n") == 1, err
    assert re.search(expected, err), err
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("role", ["mask", "wanted", "from"])
def test_maskgan_edit_refuses_a_mask_of_another_size(tmp_path, files, capsys, compilation_cache, role):
    root, _, mask = files
    mask_io.write_mask(tmp_path / "narrow.png", mask[:32])  # 64 wide, 32 high
    given = {"mask": root / "mask.png", "wanted": root / "wanted.png", role: tmp_path / "narrow.png"}
    argv = [f"--checkpoint={root / 'generator'}", f"--image={root / 'face.png'}", f"--mask={given['mask']}",
            f"--out={tmp_path / 'out.png'}", f"--jax_cache_dir={compilation_cache}"]
    argv += ["--transfer=hair", f"--from={tmp_path / 'narrow.png'}"] if role == "from" else [
        f"--wanted={given['wanted']}"]
    code, err = _run("maskgan-edit", edit.main, argv, capsys)
    assert code == 2 and "is 64x32 but" in err and "is 64x64 (width x height)" in err, err
    assert str(tmp_path / "narrow.png") in err or str(root / "face.png") in err
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("damage", ["empty", "huge", "garbage"])
def test_maskgan_parse_bad_file_exits_2_naming_it(tmp_path, files, capsys, compilation_cache, damage):
    root, _, _ = files
    make, expected = BAD_FILES[damage]
    bad = make(tmp_path / "bad.png")
    code, err = _run("maskgan-parse", parse.main, [f"--checkpoint={root / 'run'}", f"--image={bad}",
                                                   f"--out={tmp_path / 'mask.png'}",
                                                   f"--jax_cache_dir={compilation_cache}"], capsys)
    assert code == 2 and err.startswith(f"maskgan-parse: error: {bad}: ") and re.search(expected, err)
    assert not (tmp_path / "mask.png").exists()


def test_api_checks_arrays_and_sizes(files):
    root, image, mask = files
    editor = maskgan_jax.load_editor(root / "generator", batch_size=1)
    with pytest.raises(inputs.InputError, match=r"image: expected uint8 pixels in \[0, 255\]"):
        editor.edit(image.astype(np.float32), mask, wanted=mask)
    with pytest.raises(inputs.InputError, match=r"the wanted mask is 64x32 but the image is 64x64"):
        editor.edit(image, mask, wanted=mask[:32])
    with pytest.raises(inputs.InputError, match=r"its mask is 32x64 but the image is 64x64"):
        editor.edit(image, mask[:, :32], wanted=mask)
    with pytest.raises(ValueError, match=r"wanted: pixel \(x=1, y=0\) has label 19"):
        editor.edit(image, mask, wanted=np.where(np.arange(64)[None, :] == 1, 19, mask))
    with pytest.raises(inputs.InputError, match="mask: no mask given and no parser loaded"):
        editor.edit(image, None, wanted=mask)
    with pytest.raises(inputs.InputError, match=r"wanted: 1 given for 2 images"):
        editor.edit([image, image], [mask, mask], wanted=[mask])
    with pytest.raises(ValueError, match="unknown class 'lips'"):
        editor.transfer(image, mask, "lips", source_mask=mask)


@pytest.mark.parametrize("flags,expected", [
    (["--image=a.png", "--wanted=b.png"], "--image needs --mask"),
    (["--interpolate", "--from=a.png", "--image=c.png", "--mask=d.png"], "--interpolate needs --to"),
    (["--interpolate", "--from=a.png", "--to=b.png", "--image=c.png"], "--interpolate needs --mask"),
    (["--to=b.png", "--image=c.png", "--mask=d.png", "--wanted=e.png"], "--to goes with --interpolate"),
    (["--image=c.png", "--mask=d.png", "--wanted=e.png", "--label_order=bisenet"], "invalid choice: 'bisenet'"),
    (["--image=c.png", "--mask=d.png", "--wanted=e.png", "--batch_size=0"], "--batch_size must be >= 1"),
])
def test_maskgan_edit_flag_combinations_exit_2(tmp_path, capsys, flags, expected):
    with pytest.raises(SystemExit) as exit_info:
        edit.main([f"--checkpoint={tmp_path}", f"--out={tmp_path / 'out'}", *flags])
    assert exit_info.value.code == 2 and expected in capsys.readouterr().err
