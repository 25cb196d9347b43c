"""The painter's web app (Starlette): one page and a small JSON/PNG API over in-memory sessions.

    GET  /                                   the page (static/index.html, plain HTML/JS/canvas)
    GET  /api/info                           classes, palette, resolution, what the checkpoint holds
    GET  /api/gallery/{i}/face.png|mask.png  the gallery's faces (thumbnails)
    POST /api/sessions                       {"image": b64, "mask": b64 | null} or {"gallery": i} -> state
    GET  /api/sessions/{id}                  state
    POST /api/sessions/{id}/stroke           {"class": 10, "size": 5, "points": [[x, y], ...]}
    POST /api/sessions/{id}/fill             {"class": 10, "x": 3, "y": 4}
    POST /api/sessions/{id}/mask             {"mask": b64}: the whole painted mask as a PNG
    POST /api/sessions/{id}/undo|redo|reset
    POST /api/sessions/{id}/reference        {"gallery": i} or {"mask": b64} (the photo's size)
    POST /api/sessions/{id}/style_copy       the reference's mask replaces the current one
    POST /api/sessions/{id}/transfer         {"classes": ["mouth", "u_lip", "l_lip"]} from the reference
    POST /api/sessions/{id}/interpolate      {"t": 0.5}: MaskVAE walk from the mask to the reference
    POST /api/sessions/{id}/options          {"keep_unedited": true}
    GET  /api/sessions/{id}/photo.png|reference.png|result.png
    GET  /api/sessions/{id}/download/{mask|mask_palette|result}.png   (attachments)

Every state answer holds the mask as base64 label ids (uint8, row-major, H x W) and the result as
a PNG data URL, so one round trip per stroke updates the page. Files travel base64 inside JSON
(b64: standard base64 of the file's bytes, a data: URL prefix allowed). Bad input is a 4xx
{"error": "<field>: <what is wrong>"}; nothing is written to disk: downloads are built in memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import io
import json
import secrets
import threading
import time
from importlib import resources
from typing import Any

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from maskgan_jax import api, inputs, mask_io
from maskgan_jax.paint import session as sessions
from maskgan_jax.paint.faces import Face
from tfds_celebamask import labels

DEFAULT_MAX_UPLOAD_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_PIXELS = 2048 * 2048  # a painted mask travels whole with every stroke
MAX_SESSIONS = 16


class HTTPError(Exception):
    """An answer other than 200: status and the message shown on the page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def data_url(array: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(array)).decode("ascii")


def decode_upload(value: Any, field: str, max_bytes: int, max_pixels: int) -> Image.Image:
    """A base64 (or data: URL) file from a JSON field -> a decoded PIL image, with inputs' checks."""
    if not isinstance(value, str) or not value:
        raise inputs.InputError(f"{field}: expected a file as a base64 string")
    payload = value.split(",", 1)[1] if value.startswith("data:") else value
    if len(payload) * 3 // 4 > max_bytes:
        raise HTTPError(413, f"{field}: the file is over the upload limit of {max_bytes:,} bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise inputs.InputError(f"{field}: not valid base64") from None
    image = inputs.open_image_bytes(data, field, "image" if field == "image" else "mask", max_pixels)
    return image


class PaintApp:
    """The server's state: the editor, the gallery, the sessions and the lock that serialises
    model calls (one accelerator; requests queue)."""

    def __init__(self, editor: api.FaceEditor, gallery: list[Face], *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        self.editor = editor
        self.gallery = gallery
        self.max_upload_bytes = max_upload_bytes
        self.max_pixels = max_pixels
        self.sessions: collections.OrderedDict[str, sessions.Session] = collections.OrderedDict()
        self.lock = threading.Lock()
        self.walk = MaskWalk(editor.mask_vae) if editor.mask_vae is not None else None

    # ------------------------------------------------------------------ helpers

    def session(self, session_id: str) -> sessions.Session:
        found = self.sessions.get(session_id)
        if found is None:
            raise HTTPError(404, f"session {session_id[:40]!r}: no such session (the server restarted or it "
                                 f"expired; open the face again)")
        self.sessions.move_to_end(session_id)
        return found

    def gallery_face(self, value: Any) -> Face:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < len(self.gallery):
            raise inputs.InputError(f"gallery: expected a face index in 0..{len(self.gallery) - 1}, got {value!r}")
        return self.gallery[value]

    def upload(self, body: dict, field: str) -> Image.Image:
        return decode_upload(body.get(field), field, self.max_upload_bytes, self.max_pixels)

    def state(self, session_id: str, current: sessions.Session) -> dict:
        """What the page needs after any change: ids, the mask (base64 uint8 ids) and the result."""
        height, width = current.shape
        return {"session": session_id, "width": width, "height": height, "version": current.version,
                "mask": base64.b64encode(current.mask.tobytes()).decode("ascii"),
                "result": data_url(current.result), "render_ms": round(current.render_ms, 2),
                "can_undo": bool(current.undo_stack), "can_redo": bool(current.redo_stack),
                "keep_unedited": current.keep_unedited, "has_reference": current.reference is not None}

    # ------------------------------------------------------------------ actions (run under the lock)

    def open(self, body: dict) -> dict:
        if "gallery" in body:
            face = self.gallery_face(body["gallery"])
            photo, mask = face.image, face.mask
        else:
            photo = api.as_photo(self.upload(body, "image"), "image")
            if body.get("mask") is not None:
                mask = mask_io.labels_from_image(self.upload(body, "mask"), "mask",
                                                 body.get("label_order", "celebamask"))
                inputs.check_same_size(photo.shape, mask.shape, "the photo", "the mask")
            elif self.editor.parser is not None:
                mask = None  # the parser makes it
            else:
                raise inputs.InputError("mask: this server has no parser (start it with --parser=CHECKPOINT); "
                                        "upload the photo's mask too")
        encoded = self.editor.encode_style(photo, mask)
        current = sessions.Session(face=encoded, mask=encoded.mask.copy())
        current.render(self.editor)
        session_id = secrets.token_urlsafe(16)
        self.sessions[session_id] = current
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return self.state(session_id, current)

    def act(self, session_id: str, action: str, body: dict) -> dict:
        current = self.session(session_id)
        if action == "stroke":
            current.set_mask(sessions.paint_stroke(current.mask, body.get("points"),
                                                   sessions.check_class(body.get("class")), body.get("size", 1)))
        elif action == "fill":
            current.set_mask(sessions.flood_fill(current.mask, body.get("x"), body.get("y"),
                                                 sessions.check_class(body.get("class"))))
        elif action == "mask":
            current.set_mask(mask_io.labels_from_image(self.upload(body, "mask"), "mask",
                                                       body.get("label_order", "celebamask")))
        elif action == "undo":
            current.undo()
        elif action == "redo":
            current.redo()
        elif action == "reset":
            current.reset()
        elif action == "reference":
            current.set_reference(self.reference_mask(current, body))
        elif action == "style_copy":
            current.set_mask(current.need_reference().copy())
        elif action == "transfer":
            classes = body.get("classes")
            if not isinstance(classes, list) or not classes:
                raise inputs.InputError(f"classes: expected a list of class names or ids, got {classes!r}")
            ids = [sessions.check_class(c, "classes") for c in classes]
            current.set_mask(mask_io.transfer_classes(current.mask, current.need_reference(), ids))
        elif action == "interpolate":
            self.interpolate(current, body.get("t"))
        elif action == "options":
            keep = body.get("keep_unedited")
            if not isinstance(keep, bool):
                raise inputs.InputError(f"keep_unedited: expected true or false, got {keep!r}")
            current.keep_unedited = keep
        else:
            raise HTTPError(404, f"no action {action!r}")
        if action != "reference":
            current.render(self.editor)
        return self.state(session_id, current)

    def reference_mask(self, current: sessions.Session, body: dict) -> np.ndarray:
        if "gallery" in body:
            face = self.gallery_face(body["gallery"])
            return sessions.reference_from_square(face.mask, current.shape, self.editor.resolution)
        mask = mask_io.labels_from_image(self.upload(body, "mask"), "reference mask",
                                         body.get("label_order", "celebamask"))
        inputs.check_same_size(current.face.photo.shape, mask.shape, "the photo", "the reference mask")
        return mask

    def interpolate(self, current: sessions.Session, t: Any) -> None:
        if self.walk is None:
            raise HTTPError(409, "interpolate: the checkpoint holds no MaskVAE (train the maskvae phase, or export "
                                 "a run that has one)")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
            raise inputs.InputError(f"t: expected a number in [0, 1], got {t!r}")
        reference = current.need_reference()
        base = current.slider_base if current.slider_base is not None else current.mask
        mask = self.walk.between(base, reference, float(t), current.face.frame)
        first = current.slider_base is None
        current.set_mask(mask, from_slider=True)
        if first:
            current.slider_base = base


class MaskWalk:
    """The MaskVAE's latent line between two masks (paper, Fig. 13), compiled once for the slider."""

    def __init__(self, vae: Any):
        import jax
        import jax.numpy as jnp

        from maskgan_jax.models import one_hot_mask

        module = vae.module
        self.vae = vae

        def walk(variables, ends, t):
            mean, _ = module.apply(variables, one_hot_mask(ends, module.num_classes), False, method=module.encode)
            latent = (1.0 - t) * mean[0:1] + t * mean[1:2]
            logits = module.apply(variables, latent, False, method=module.decode)
            return jnp.argmax(logits, axis=-1).astype(jnp.uint8)[0]

        self._walk = jax.jit(walk)

    def between(self, mask_a: np.ndarray, mask_b: np.ndarray, t: float, frame: Any) -> np.ndarray:
        """uint8 (H, W) masks of one photo and t in [0, 1] -> the decoded mask at t, at the photo's
        size. The ends are the masks themselves (t = 0 gives mask_a back exactly)."""
        from maskgan_jax import framing

        if t == 0.0:
            return mask_a.copy()
        if t == 1.0:
            return mask_b.copy()
        size = self.vae.resolution
        square_frame = framing.frame_of(frame.height, frame.width, size)
        ends = np.stack([framing.labels_to_square(m, square_frame) for m in (mask_a, mask_b)]).astype(np.int32)
        decoded = np.asarray(self._walk(self.vae.variables, ends, np.float32(t)))
        return framing.labels_from_square(decoded, square_frame)


# ---------------------------------------------------------------------- HTTP plumbing


async def read_json(request: Request, limit: int) -> dict:
    """The request's JSON object, refusing bodies over `limit` bytes before reading them whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"request body is {int(declared):,} bytes; the upload limit is {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"request body is over the upload limit of {limit:,} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HTTPError(400, f"request body: not JSON ({error})") from None
    if not isinstance(body, dict):
        raise HTTPError(400, "request body: expected a JSON object")
    return body


def create_app(paint: PaintApp) -> Starlette:
    """The Starlette application serving `paint`."""
    page = resources.files("maskgan_jax.paint").joinpath("static", "index.html").read_text()
    # JSON bodies carry files base64-encoded: 4/3 of the file, plus the other fields.
    body_limit = paint.max_upload_bytes * 3 + 1024 * 1024

    async def guarded(function, *args) -> Response:
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(_locked, paint.lock, function, *args)
        except HTTPError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        except (inputs.InputError, ValueError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        if isinstance(result, Response):
            return result
        result["server_ms"] = round((time.perf_counter() - started) * 1000.0, 2)
        return JSONResponse(result)

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def info(request: Request) -> Response:
        return JSONResponse({
            "resolution": paint.editor.resolution,
            "classes": [{"id": i, "name": n, "colour": [int(c) for c in labels.PALETTE[i]]}
                        for i, n in enumerate(labels.CLASS_NAMES)],
            "has_parser": paint.editor.parser is not None, "has_mask_vae": paint.walk is not None,
            "gallery": [face.name for face in paint.gallery], "max_upload_bytes": paint.max_upload_bytes,
            "max_pixels": paint.max_pixels})

    async def gallery_image(request: Request) -> Response:
        async def build():
            face = paint.gallery_face(int(request.path_params["index"]))
            kind = request.path_params["kind"]
            return Response(png_bytes(face.image if kind == "face" else mask_io.colour_labels(face.mask)),
                            media_type="image/png")
        return await _answer(build)

    async def open_session(request: Request) -> Response:
        try:
            body = await read_json(request, body_limit)
        except HTTPError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        return await guarded(paint.open, body)

    async def get_state(request: Request) -> Response:
        session_id = request.path_params["session"]
        return await guarded(lambda: paint.state(session_id, paint.session(session_id)))

    async def action(request: Request) -> Response:
        try:
            body = await read_json(request, body_limit)
        except HTTPError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        return await guarded(paint.act, request.path_params["session"], request.path_params["action"], body)

    async def image(request: Request) -> Response:
        session_id, kind = request.path_params["session"], request.path_params["kind"]
        return await guarded(_image, paint, session_id, kind, False)

    async def download(request: Request) -> Response:
        session_id, kind = request.path_params["session"], request.path_params["kind"]
        return await guarded(_image, paint, session_id, kind, True)

    return Starlette(routes=[
        Route("/", index),
        Route("/api/info", info),
        Route("/api/gallery/{index:int}/{kind:str}.png", gallery_image),
        Route("/api/sessions", open_session, methods=["POST"]),
        Route("/api/sessions/{session:str}", get_state),
        Route("/api/sessions/{session:str}/download/{kind:str}.png", download),
        Route("/api/sessions/{session:str}/{kind:str}.png", image),
        Route("/api/sessions/{session:str}/{action:str}", action, methods=["POST"]),
    ])


async def _answer(build) -> Response:
    try:
        return await build()
    except HTTPError as error:
        return JSONResponse({"error": str(error)}, status_code=error.status)
    except (inputs.InputError, ValueError) as error:
        return JSONResponse({"error": str(error)}, status_code=400)


def _locked(lock: threading.Lock, function, *args):
    with lock:
        return function(*args)


DOWNLOADS = {"mask": "mask.png", "mask_palette": "mask_palette.png", "result": "result.png"}


def _image(paint: PaintApp, session_id: str, kind: str, attachment: bool) -> Response:
    """A session's picture as a PNG: photo, reference (palette), result, mask (label ids),
    mask_palette. Built in memory; the file name offered is fixed, never from the request."""
    current = paint.session(session_id)
    pictures = {"photo": lambda: current.face.photo, "result": lambda: current.result,
                "mask": lambda: current.mask, "mask_palette": lambda: mask_io.colour_labels(current.mask),
                "reference": lambda: mask_io.colour_labels(current.need_reference())}
    if kind not in pictures or (attachment and kind not in DOWNLOADS):
        offered = ", ".join(DOWNLOADS if attachment else pictures)
        raise HTTPError(404, f"no picture {kind[:40]!r}; expected one of {offered}")
    headers = {"Cache-Control": "no-store"}
    if attachment:
        headers["Content-Disposition"] = f'attachment; filename="maskgan_{DOWNLOADS[kind]}"'
    return Response(png_bytes(pictures[kind]()), media_type="image/png", headers=headers)
