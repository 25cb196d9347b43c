"""The painter's server through an HTTP test client (maskgan_jax.paint.server): opening faces,
strokes, fills, mask uploads, undo/redo, reference, style copy, transfer, interpolation, keep-unedited,
downloads, and every bad input answered with a 4xx naming the field while the server keeps serving.
Also the encode-once / render-many split of the API it relies on."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

import maskgan_jax
from maskgan_jax import mask_io
from maskgan_jax.paint import faces, server, session
import paint_fixtures as fx
from tfds_celebamask import labels

MOUTH, SKIN, HAIR = labels.CLASS_ID["mouth"], labels.CLASS_ID["skin"], labels.CLASS_ID["hair"]


@pytest.fixture(scope="module")
def editor(tmp_path_factory, compilation_cache):
    workdir = fx.make_workdir(tmp_path_factory.mktemp("paint_api"))
    return maskgan_jax.load_editor(workdir, batch_size=1)


@pytest.fixture(scope="module")
def gallery(editor):
    return faces.synthetic_faces(3, editor.resolution)


@pytest.fixture()
def client(editor, gallery):
    paint = server.PaintApp(editor, gallery, max_upload_bytes=200_000, max_pixels=256 * 256)
    with TestClient(server.create_app(paint)) as test_client:
        test_client.paint = paint
        yield test_client


def post(client, path, body=None, status=200):
    response = client.post(path, content=json.dumps(body or {}), headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    return response.json()


def test_encode_once_render_many_equals_edit(editor, gallery):
    face = gallery[1]
    wanted = gallery[2].mask
    encoded = editor.encode_style(face.image, face.mask)
    for keep in (False, True):
        np.testing.assert_array_equal(editor.render(encoded, wanted, keep_unedited=keep),
                                      editor.edit(face.image, face.mask, wanted, keep_unedited=keep))
    # the style really is the face's: another face's style renders another image
    other = editor.encode_style(gallery[0].image, gallery[0].mask)
    assert np.abs(other.style - encoded.style).max() > 1e-4


def test_paint_stroke_is_exact_discs_without_anti_aliasing():
    mask = np.zeros((20, 30), np.uint8)
    out = session.paint_stroke(mask, [[5, 5], [15, 5]], MOUTH, 3)
    expected = np.zeros_like(mask)
    expected[4:7, 5:16] = MOUTH  # radius 1: a 3-pixel-high band ...
    expected[[4, 4, 6, 6], [4, 16, 4, 16]] = 0  # ... with plus-shaped caps at both ends
    expected[5, 4] = expected[5, 16] = MOUTH
    np.testing.assert_array_equal(out, expected)
    assert set(np.unique(out)) <= {0, MOUTH} and mask.max() == 0  # the input is not modified
    one = session.paint_stroke(mask, [[29, 19]], HAIR, 1)
    assert one[19, 29] == HAIR and one.sum() == HAIR
    edge = session.paint_stroke(mask, [[-3, -3], [33, 23]], HAIR, 5)  # ends off the photo: clipped
    assert edge[0, 0] == HAIR and edge[19, 29] == HAIR


def test_flood_fill_is_four_connected():
    mask = np.zeros((5, 5), np.uint8)
    mask[2, :] = SKIN
    mask[0, 4] = SKIN
    out = session.flood_fill(mask, 0, 0, HAIR)
    assert (out[:2] == np.where(mask[:2] == 0, HAIR, SKIN)).all() and (out[3:] == 0).all()
    assert out[0, 4] == SKIN


def test_open_paint_undo_redo_reset_and_save(client, gallery):
    info = client.get("/api/info").json()
    assert info["resolution"] == 64 and len(info["classes"]) == 19 and info["has_mask_vae"]
    assert info["classes"][MOUTH] == {"id": MOUTH, "name": "mouth", "colour": list(labels.PALETTE[MOUTH])}
    assert "MaskGAN painter" in client.get("/").text
    opened = post(client, "/api/sessions", {"gallery": 1})
    sid = opened["session"]
    np.testing.assert_array_equal(fx.mask_of(opened), gallery[1].mask)
    assert not opened["can_undo"]

    painted = post(client, f"/api/sessions/{sid}/stroke", {"class": "mouth", "size": 5, "points": [[20, 40], [44, 40]]})
    expected = session.paint_stroke(gallery[1].mask, [[20, 40], [44, 40]], MOUTH, 5)
    np.testing.assert_array_equal(fx.mask_of(painted), expected)
    assert painted["can_undo"] and painted["version"] == opened["version"] + 1
    assert np.abs(fx.result_of(painted).astype(int) - fx.result_of(opened)).max() > 0
    np.testing.assert_array_equal(fx.result_of(painted), client.paint.editor.edit(gallery[1].image, gallery[1].mask,
                                                                                  expected))
    filled = post(client, f"/api/sessions/{sid}/fill", {"class": HAIR, "x": 0, "y": 0})
    assert fx.mask_of(filled)[0, 0] == HAIR

    undone = post(client, f"/api/sessions/{sid}/undo")
    np.testing.assert_array_equal(fx.mask_of(undone), expected)
    np.testing.assert_array_equal(fx.result_of(undone), fx.result_of(painted))
    undone = post(client, f"/api/sessions/{sid}/undo")
    np.testing.assert_array_equal(fx.mask_of(undone), gallery[1].mask)
    assert not undone["can_undo"] and undone["can_redo"]
    redone = post(client, f"/api/sessions/{sid}/redo")
    np.testing.assert_array_equal(fx.mask_of(redone), expected)

    # a whole mask as a PNG (palette colours), then save: label ids, palette and result
    uploaded = post(client, f"/api/sessions/{sid}/mask", {"mask": fx.png_b64(mask_io.colour_labels(gallery[2].mask))})
    np.testing.assert_array_equal(fx.mask_of(uploaded), gallery[2].mask)
    saved = client.get(f"/api/sessions/{sid}/download/mask.png")
    assert saved.status_code == 200 and "attachment" in saved.headers["content-disposition"]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(saved.content))), gallery[2].mask)
    palette = Image.open(io.BytesIO(client.get(f"/api/sessions/{sid}/download/mask_palette.png").content))
    np.testing.assert_array_equal(mask_io.labels_from_image(palette), gallery[2].mask)
    result = np.asarray(Image.open(io.BytesIO(client.get(f"/api/sessions/{sid}/download/result.png").content)))
    np.testing.assert_array_equal(result, fx.result_of(uploaded))

    reset = post(client, f"/api/sessions/{sid}/reset")
    np.testing.assert_array_equal(fx.mask_of(reset), gallery[1].mask)
    assert reset["can_undo"]  # reset is itself undoable


def test_upload_photo_of_any_size_with_its_mask_and_keep_unedited(client, gallery):
    photo = np.pad(gallery[0].image, ((0, 0), (8, 8), (0, 0)), mode="edge")  # 80 wide, 64 high
    mask = np.pad(gallery[0].mask, ((0, 0), (8, 8)), mode="edge")
    opened = post(client, "/api/sessions", {"image": fx.png_b64(photo), "mask": "data:image/png;base64," +
                                            fx.png_b64(mask)})
    sid = opened["session"]
    assert (opened["width"], opened["height"]) == (80, 64)
    photo_png = np.asarray(Image.open(io.BytesIO(client.get(f"/api/sessions/{sid}/photo.png").content)))
    np.testing.assert_array_equal(photo_png, photo)
    post(client, f"/api/sessions/{sid}/stroke", {"class": MOUTH, "size": 3, "points": [[30, 44], [50, 44]]})
    kept = post(client, f"/api/sessions/{sid}/options", {"keep_unedited": True})
    assert kept["keep_unedited"]
    result = fx.result_of(kept)
    np.testing.assert_array_equal(result[:8], photo[:8])  # far from the stroke: the photo's own pixels
    assert np.abs(result[40:48, 30:50].astype(int) - photo[40:48, 30:50]).max() > 0


def test_reference_style_copy_transfer_and_interpolation(client, gallery):
    sid = post(client, "/api/sessions", {"gallery": 0})["session"]
    for action in ("style_copy", "transfer", "interpolate"):
        body = {"classes": ["mouth"]} if action == "transfer" else {"t": 0.5}
        assert "reference" in post(client, f"/api/sessions/{sid}/{action}", body, status=400)["error"]
    assert post(client, f"/api/sessions/{sid}/reference", {"gallery": 2})["has_reference"]
    reference = np.asarray(Image.open(io.BytesIO(client.get(f"/api/sessions/{sid}/reference.png").content)))
    np.testing.assert_array_equal(mask_io.labels_from_colours(reference), gallery[2].mask)

    moved = post(client, f"/api/sessions/{sid}/transfer", {"classes": ["mouth", "u_lip", "l_lip"]})
    np.testing.assert_array_equal(fx.mask_of(moved), mask_io.transfer_classes(gallery[0].mask, gallery[2].mask,
                                                                               (10, 11, 12)))
    copied = post(client, f"/api/sessions/{sid}/style_copy")
    np.testing.assert_array_equal(fx.mask_of(copied), gallery[2].mask)
    post(client, f"/api/sessions/{sid}/undo")
    post(client, f"/api/sessions/{sid}/undo")

    # the slider: one undo step for all its moves; ends exact, the middle a MaskVAE decode
    halfway = post(client, f"/api/sessions/{sid}/interpolate", {"t": 0.5})
    middle = fx.mask_of(halfway)
    assert middle.shape == (64, 64) and middle.max() < 19
    end = post(client, f"/api/sessions/{sid}/interpolate", {"t": 1.0})
    np.testing.assert_array_equal(fx.mask_of(end), gallery[2].mask)
    start = post(client, f"/api/sessions/{sid}/interpolate", {"t": 0})
    np.testing.assert_array_equal(fx.mask_of(start), gallery[0].mask)
    post(client, f"/api/sessions/{sid}/interpolate", {"t": 0.5})
    undone = post(client, f"/api/sessions/{sid}/undo")
    np.testing.assert_array_equal(fx.mask_of(undone), gallery[0].mask)
    assert not undone["can_undo"]

    # a reference mask uploaded at the photo's size
    assert post(client, f"/api/sessions/{sid}/reference", {"mask": fx.png_b64(gallery[1].mask)})["has_reference"]
    np.testing.assert_array_equal(fx.mask_of(post(client, f"/api/sessions/{sid}/style_copy")), gallery[1].mask)


def _bad(client, path, body, status, *words):
    answer = post(client, path, body, status=status)
    for word in words:
        assert word in answer["error"], answer["error"]


def test_bad_inputs_are_4xx_naming_the_problem_and_the_server_keeps_serving(client, gallery):
    photo = fx.png_b64(gallery[0].image)
    _bad(client, "/api/sessions", {"image": base64.b64encode(b"this is not an image").decode(), "mask": photo},
         400, "image", "not a readable image")
    _bad(client, "/api/sessions", {"image": "!!!", "mask": photo}, 400, "image", "base64")
    _bad(client, "/api/sessions", {"image": photo}, 400, "mask", "parser")
    off_palette = mask_io.colour_labels(gallery[0].mask)
    off_palette[3, 7] = (1, 2, 3)
    _bad(client, "/api/sessions", {"image": photo, "mask": fx.png_b64(off_palette)}, 400,
         "pixel (x=7, y=3)", "(1, 2, 3)", "palette")
    ids = gallery[0].mask.copy()
    ids[5, 6] = 40
    _bad(client, "/api/sessions", {"image": photo, "mask": fx.png_b64(ids)}, 400, "pixel (x=6, y=5)", "label 40",
         "0..18")
    _bad(client, "/api/sessions", {"image": photo, "mask": fx.png_b64(gallery[0].mask[:, :50])}, 400,
         "50x64", "64x64")
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), np.uint8)  # ~270 kB as PNG
    _bad(client, "/api/sessions", {"image": fx.png_b64(noise), "mask": photo}, 413, "upload limit")
    _bad(client, "/api/sessions", {"image": fx.png_b64(np.ones((300, 300), np.uint8)), "mask": photo}, 400,
         "300x300", "65,536 pixels")
    _bad(client, "/api/sessions", {"gallery": 9}, 400, "gallery", "0..2")
    response = client.post("/api/sessions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "not JSON" in response.json()["error"]
    huge = client.post("/api/sessions", content=b"x" * 1_000, headers={"Content-Length": str(10**9)})
    assert huge.status_code == 413

    sid = post(client, "/api/sessions", {"gallery": 0})["session"]
    at = f"/api/sessions/{sid}"
    _bad(client, f"{at}/stroke", {"class": 19, "size": 3, "points": [[1, 1]]}, 400, "class", "0..18")
    _bad(client, f"{at}/stroke", {"class": "moustache", "size": 3, "points": [[1, 1]]}, 400, "moustache")
    _bad(client, f"{at}/stroke", {"class": 1, "size": 0, "points": [[1, 1]]}, 400, "size")
    _bad(client, f"{at}/stroke", {"class": 1, "size": 3, "points": [[1, "a"]]}, 400, "points")
    _bad(client, f"{at}/stroke", {"class": 1, "size": 3, "points": []}, 400, "points")
    _bad(client, f"{at}/fill", {"class": 1, "x": 64, "y": 0}, 400, "inside the 64x64")
    _bad(client, f"{at}/mask", {"mask": fx.png_b64(gallery[0].mask[:32])}, 400, "64x32", "64x64")
    _bad(client, f"{at}/reference", {"mask": fx.png_b64(gallery[0].mask[:, :32])}, 400, "reference mask")
    _bad(client, f"{at}/interpolate", {"t": 0.5}, 400, "reference")
    post(client, f"{at}/reference", {"gallery": 1})
    _bad(client, f"{at}/interpolate", {"t": 2}, 400, "t:", "[0, 1]")
    _bad(client, f"{at}/transfer", {"classes": "mouth"}, 400, "classes")
    _bad(client, f"{at}/options", {"keep_unedited": "yes"}, 400, "keep_unedited")
    _bad(client, f"{at}/explode", {}, 404, "explode")
    assert client.post("/api/sessions/../../etc/passwd/undo").status_code == 404
    _bad(client, "/api/sessions/unknown/undo", {}, 404, "no such session")
    assert client.get(f"{at}/download/..%2Fsecret.png").status_code == 404
    assert client.get("/api/sessions/unknown/download/mask.png").status_code == 404

    # nothing above broke the session or the server
    after = post(client, f"{at}/stroke", {"class": MOUTH, "size": 3, "points": [[10, 10]]})
    assert fx.mask_of(after)[10, 10] == MOUTH


def test_without_mask_vae_interpolation_is_refused_and_a_parser_makes_masks(tmp_path, compilation_cache, gallery):
    workdir = fx.make_workdir(tmp_path, with_mask_vae=False, with_parser=True)
    editor = maskgan_jax.load_editor(workdir, parser=workdir, batch_size=1)
    paint = server.PaintApp(editor, gallery)
    with TestClient(server.create_app(paint)) as client:
        info = client.get("/api/info").json()
        assert not info["has_mask_vae"] and info["has_parser"]
        photo = np.pad(gallery[0].image, ((4, 4), (0, 0), (0, 0)), mode="edge")  # 64 wide, 72 high
        parsed = post(client, "/api/sessions", {"image": fx.png_b64(photo)})  # no mask: the parser's
        np.testing.assert_array_equal(fx.mask_of(parsed), editor.parse(photo))
        assert (parsed["width"], parsed["height"]) == (64, 72)
        sid = post(client, "/api/sessions", {"gallery": 0})["session"]
        post(client, f"/api/sessions/{sid}/reference", {"gallery": 1})
        _bad(client, f"/api/sessions/{sid}/interpolate", {"t": 0.5}, 409, "no MaskVAE")


def test_sessions_are_capped_and_ids_are_the_servers(client):
    ids = {post(client, "/api/sessions", {"gallery": 0})["session"] for _ in range(server.MAX_SESSIONS + 2)}
    assert len(ids) == server.MAX_SESSIONS + 2 and all(len(i) >= 20 for i in ids)
    assert len(client.paint.sessions) == server.MAX_SESSIONS


def test_command_line_builds_the_app_and_refuses_a_missing_checkpoint(tmp_path, compilation_cache, capsys):
    from maskgan_jax import paint

    args = paint.build_parser().parse_args([f"--checkpoint={fx.make_workdir(tmp_path)}", "--gallery=2",
                                            f"--jax_cache_dir={compilation_cache}", "--max_upload_mb=1"])
    assert args.host == "127.0.0.1" and args.port == 8000  # local only unless told otherwise
    app, seconds = paint.make_app(args)
    with TestClient(app) as client:
        info = client.get("/api/info").json()
    assert info["gallery"] == ["synthetic 0", "synthetic 1"] and info["max_upload_bytes"] == 2**20 and seconds > 0
    with pytest.raises(SystemExit) as exited:
        from maskgan_jax import cli

        cli.run("maskgan-paint", paint.main, [f"--checkpoint={tmp_path / 'nowhere'}"])
    assert exited.value.code == 2
    assert "maskgan-paint: error:" in capsys.readouterr().err


def test_gallery_from_a_tfds_split(smoke_data_dir, editor):
    gallery = faces.tfds_faces("celebamask_hq/official_64", "test", 2, data_dir=str(smoke_data_dir))
    assert len(gallery) == 2 and gallery[0].image.shape == (64, 64, 3) and gallery[0].mask.shape == (64, 64)
    assert gallery[0].mask.max() < 19 and len(np.unique(gallery[0].mask)) > 3  # a face's mask, not a blank
    paint = server.PaintApp(editor, gallery)
    with TestClient(server.create_app(paint)) as client:
        opened = post(client, "/api/sessions", {"gallery": 1})
        np.testing.assert_array_equal(fx.mask_of(opened), gallery[1].mask)
