"""Editing your own photo end to end: the README's "Edit a face" commands, run as written on a tiny run
(the smoke config's generator, MaskVAE and parser, freshly initialised, in a `workdir/quickstart`),
the label orders, mask interpolation, exports and the Python API on photos of any size."""

import re
import shlex
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

import maskgan_jax
import paint_fixtures
from maskgan_jax import classify, convert, edit, export, framing, mask_io, parse
from tfds_celebamask import labels, synthetic

README = Path(__file__).parent.parent / "README.md"
FIXTURE = Path(__file__).parent / "data"
RESOLUTION = 64
PHOTO_WIDTH = 80  # me.jpg is 64 high and 80 wide: not square, not the model's size


def _widen(array, width):
    """Edge-pads the columns of an (H, W, ...) array to `width` (a wider photo of the same face)."""
    extra = width - array.shape[1]
    pads = [(0, 0), (extra // 2, extra - extra // 2)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pads, mode="edge")


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """A folder laid out as after `make quickstart`: workdir/quickstart with the maskvae, dmn and parser
    phases (smoke sizes), me.jpg (64x80), other_mask.png (a smiling mask, 64x80), me_bisenet.png (me's
    true mask numbered in the face-parsing order) and latest_net_G.pth's stand-in, the fixture's .npz."""
    root = tmp_path_factory.mktemp("clean_clone")
    paint_fixtures.make_workdir(root, with_mask_vae=True, with_parser=True, name="workdir/quickstart")
    geometry, style = synthetic.sample_face(synthetic.face_rng(5, 2))
    image, mask = synthetic.render(geometry, style, RESOLUTION)
    _, smiling = synthetic.render(synthetic.EDITS["smile"](geometry), style, RESOLUTION)
    photo, true_mask = _widen(image, PHOTO_WIDTH), _widen(mask, PHOTO_WIDTH)
    Image.fromarray(photo).save(root / "me.jpg", quality=95)
    mask_io.write_mask(root / "other_mask.png", _widen(smiling, PHOTO_WIDTH), palette=True)
    mask_io.write_mask(root / "me_bisenet.png", mask_io.from_celebamask(true_mask, "face_parsing"))
    return root, true_mask


def readme_edit_commands():
    """The shell commands of the README's "Edit a face" section (continuation lines joined)."""
    text = README.read_text()
    section = text[text.index("## Edit a face"):text.index("\n## ", text.index("## Edit a face") + 5)]
    commands, current = [], ""
    for line in section.splitlines():
        if not line.startswith("    ") or line.strip().startswith("#"):
            continue
        current += line.strip().removesuffix("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            commands.append(current.strip())
            current = ""
    return commands, section


ENTRY_POINTS = {"maskgan-edit": edit.main, "maskgan-parse": parse.main,
                "python -m maskgan_jax.export": export.main, "python -m maskgan_jax.convert": convert.main}


def test_readme_edit_a_face_commands_run_as_written(quickstart, monkeypatch, compilation_cache, capsys):
    root, true_mask = quickstart
    monkeypatch.chdir(root)
    commands, section = readme_edit_commands()
    assert len(commands) >= 8
    seconds = {}
    for command in commands:
        program = next(name for name in ENTRY_POINTS if command.startswith(name + " "))
        argv = shlex.split(command[len(program):])
        if program == "python -m maskgan_jax.convert":
            # The official weights' stand-in: the fixture's generator (ngf 4), made at 64x64.
            argv = [a.replace("latest_net_G.pth", str(FIXTURE / "state_dict.npz")) for a in argv] + ["--resolution=64"]
        started = time.perf_counter()
        if program == "maskgan-edit" and "--list_classes" not in argv:
            argv.append(f"--jax_cache_dir={compilation_cache}")
        assert ENTRY_POINTS[program](argv) == 0, command
        seconds[command] = time.perf_counter() - started
    printed = capsys.readouterr().out
    with capsys.disabled():
        print("\n".join(f"{t:6.1f} s  {c[:90]}" for c, t in seconds.items()))
    assert re.search(r"13\s+17\s+hair\s+\(  0,   0, 204\)", printed)  # --list_classes

    photo_shape = (RESOLUTION, PHOTO_WIDTH)
    for name in ("me", "me_styled", "me_bisenet", "me_from_export", "me_official"):
        assert mask_io.read_image(root / "edited" / f"{name}.png").shape == (*photo_shape, 3), name
    made_mask = mask_io.read_mask(root / "edited" / "me_mask.png")  # the parser's, at the photo's size
    assert made_mask.shape == photo_shape
    wanted = mask_io.read_mask(root / "edited" / "me_wanted.png")
    np.testing.assert_array_equal(wanted, mask_io.transfer_classes(made_mask, mask_io.read_mask("other_mask.png"),
                                                                   (labels.CLASS_ID["hair"],)))
    interpolation = root / "edited" / "interpolation"
    assert len(list(interpolation.glob("mask_*.png"))) == 8 and len(list(interpolation.glob("face_*.png"))) == 8
    assert mask_io.read_image(interpolation / "strip.png").shape == (2 * RESOLUTION, 8 * RESOLUTION, 3)
    np.testing.assert_array_equal(mask_io.read_mask(interpolation / "mask_00.png").shape, (RESOLUTION, RESOLUTION))

    # The Python block, run as written.
    code = section[section.index("```python") + len("```python"):section.index("```", section.index("```python") + 9)]
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["result"].shape == (*photo_shape, 3) and scope["result"].dtype == np.uint8
    np.testing.assert_array_equal(scope["mask"], made_mask)
    assert true_mask.shape == photo_shape


def test_label_orders_map_both_ways_and_read_bisenet_masks(tmp_path):
    every_id = np.arange(labels.NUM_CLASSES, dtype=np.uint8)
    for order in mask_io.LABEL_ORDERS:
        np.testing.assert_array_equal(mask_io.to_celebamask(mask_io.from_celebamask(every_id, order), order), every_id)
        np.testing.assert_array_equal(mask_io.from_celebamask(mask_io.to_celebamask(every_id, order), order), every_id)
    np.testing.assert_array_equal(mask_io.to_celebamask(every_id, "celebamask"), every_id)
    bisenet_to_name = {1: "skin", 2: "l_brow", 10: "nose", 14: "neck", 16: "cloth", 17: "hair", 18: "hat"}
    for bisenet_id, name in bisenet_to_name.items():
        assert mask_io.to_celebamask(np.uint8(bisenet_id), "face_parsing") == labels.CLASS_ID[name]
        assert mask_io.from_celebamask(np.uint8(labels.CLASS_ID[name]), "face_parsing") == bisenet_id
    bisenet = np.array([[0, 1, 17], [10, 13, 18]], np.uint8)
    Image.fromarray(bisenet).save(tmp_path / "bisenet.png")
    expected = np.array([[0, 1, 13], [2, 12, 14]], np.uint8)
    np.testing.assert_array_equal(mask_io.read_mask(tmp_path / "bisenet.png", "face_parsing"), expected)
    np.testing.assert_array_equal(mask_io.read_mask(tmp_path / "bisenet.png"), bisenet)  # the default order
    with pytest.raises(ValueError, match="label order 'bisenet'"):
        mask_io.read_mask(tmp_path / "bisenet.png", "bisenet")


def test_api_on_photos_of_any_aspect_matches_the_model_square_and_the_label_orders(quickstart):
    root, true_mask = quickstart
    editor = maskgan_jax.load_editor(root / "workdir" / "quickstart", parser=root / "workdir" / "quickstart",
                                     batch_size=2)
    assert editor.mask_vae is not None and editor.parser is not None and editor.resolution == RESOLUTION
    photo = mask_io.read_image(root / "me.jpg")
    other = mask_io.read_mask(root / "other_mask.png")
    result = editor.transfer(photo, true_mask, "hair", source_mask=other)
    assert result.shape == photo.shape and result.dtype == np.uint8
    # The same as editing the edge-padded square photo at the model's size, then cropping.
    frame = framing.frame_of(*photo.shape[:2], RESOLUTION)
    wanted = mask_io.transfer_classes(true_mask, other, (labels.CLASS_ID["hair"],))
    square, _ = editor.editor.edit(framing.image_to_square(photo, frame)[None],
                                   framing.labels_to_square(true_mask, frame)[None],
                                   framing.labels_to_square(wanted, frame)[None])
    np.testing.assert_array_equal(result, framing.image_from_square(square[0], frame))
    # The mask in the face-parsing order gives the same edit; a list in, a list out.
    bisenet = mask_io.from_celebamask(true_mask, "face_parsing")
    tall = photo.transpose(1, 0, 2).copy()
    wanted_bisenet = mask_io.from_celebamask(wanted, "face_parsing")
    results = editor.edit([photo, tall], [bisenet, bisenet.T], wanted=[wanted_bisenet, wanted_bisenet.T],
                          label_order="face_parsing")
    np.testing.assert_array_equal(results[0], result)
    assert results[1].shape == tall.shape
    # keep_unedited keeps the photo's own pixels far from the edit.
    kept = editor.edit(photo, true_mask, wanted=wanted, keep_unedited=True)
    alpha = framing.keep_unedited_alpha(true_mask, wanted, 3, 3)[..., 0]
    np.testing.assert_array_equal(kept[alpha == 0], photo[alpha == 0])
    masks, faces = editor.interpolate(true_mask, other, 3, photo, None)
    assert masks.shape == (3, RESOLUTION, RESOLUTION) and faces.shape == (3, RESOLUTION, RESOLUTION, 3)
    # The path's ends are the two masks' own codes whatever the number of steps; the faces are the
    # generator's renders of the photo (parsed mask) on the decoded masks.
    ends, _ = editor.interpolate(true_mask, other, 2, photo, None)
    np.testing.assert_array_equal(ends, masks[[0, -1]])
    parsed = framing.labels_to_square(editor.parse(photo), frame)
    rendered, _ = editor.editor.edit(np.repeat(framing.image_to_square(photo, frame)[None], 3, axis=0),
                                     np.repeat(parsed[None], 3, axis=0), masks)
    np.testing.assert_array_equal(faces, rendered)
    assert editor.parse(photo).shape == photo.shape[:2]


def test_export_holds_only_params_and_loads_everywhere(quickstart, tmp_path):
    root, _ = quickstart
    out = tmp_path / "shared"
    assert export.main([f"--checkpoint={root / 'workdir' / 'quickstart'}", f"--out={out}"]) == 0
    (step_dir,) = [p for p in out.iterdir() if p.is_dir()]
    assert sorted(p.name for p in step_dir.iterdir() if p.is_dir()) == ["classifier", "config", "generator", "mask_vae",
                                                                         "parser"]
    source = edit.load_generator(root / "workdir" / "quickstart")
    copied = edit.load_generator(out)
    assert all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, source.params, copied.params)))
    assert parse.load_parser(out).resolution == RESOLUTION
    assert classify.load_classifier(out).attributes == ("Smiling",)
    vae = edit.load_mask_vae(out)
    assert "batch_stats" in vae.variables
    with pytest.raises(FileExistsError, match="already exists"):
        export.main([f"--checkpoint={root / 'workdir' / 'quickstart'}", f"--out={out}"])


def test_readme_class_table_is_the_code_mapping():
    _, section = readme_edit_commands()
    rows = re.findall(r"^\|(.*)\|$", section, flags=re.MULTILINE)
    documented = {}
    for row in rows:
        cells = [c.strip() for c in row.split("|")]
        for name, celebamask_id, face_parsing_id in (cells[0:3], cells[4:7]):
            if name in labels.CLASS_ID:
                documented[name] = (int(celebamask_id), int(face_parsing_id))
    assert len(documented) == labels.NUM_CLASSES
    for name, (celebamask_id, face_parsing_id) in documented.items():
        assert labels.CLASS_ID[name] == celebamask_id, name
        assert mask_io.to_celebamask(np.uint8(face_parsing_id), "face_parsing") == celebamask_id, name
