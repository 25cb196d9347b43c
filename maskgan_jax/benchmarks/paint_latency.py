"""Stroke-to-image latency of the painter (`maskgan-paint`), through its HTTP API and in Chromium.

    python -m maskgan_jax.benchmarks.paint_latency [--variants=quickstart,reference_256] [--strokes=20]

For each variant a generator with random weights (timing does not depend on them) is served by the
real app (uvicorn on 127.0.0.1, a thread of this process) with a synthetic face open:
- first request: opening the first face, which compiles the style encoder and the renderer (or reads
  them from the persistent compilation cache, --jax_cache_dir; the table says which);
- HTTP: a client posts strokes (the mouth brush, 5 px, 3 points) and times each from sending it to
  the new result decoded from the answer (PNG -> pixels): what a page waits for, minus drawing;
- browser: headless Chromium (Debian's chromium + chromedriver) drags the same kind of stroke on the
  page; the page's own timer runs from pointerup to the new result image decoded (window.paintTimings).
The style is encoded once when the face opens; strokes only render.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import shutil
import socket
import statistics
import threading
import time
from collections.abc import Sequence

VARIANTS = {
    # the quickstart's generator (configs/ebst.py:quickstart): 64x64, ngf 16, 3 downsamplings, 2 blocks
    "quickstart": ("quickstart", 64),
    # the paper's widths (ngf 64, 4 downsamplings, 4 blocks: 89.7 M parameters) at 256x256
    "reference_256": (None, 256),
}


def _editor(variant: str):
    import jax

    from configs import ebst
    from maskgan_jax import api, edit
    from maskgan_jax.models import registry

    arg, resolution = VARIANTS[variant]
    config = ebst.get_config(arg)
    config.resolution = resolution
    module = registry.build_network(config, "generator")
    mesh = edit.editing_mesh(jax.local_devices()[:1])
    params = jax.jit(lambda key: registry.init_variables(config, "generator", module, key)["params"])(
        jax.random.key(0))
    count = sum(x.size for x in jax.tree_util.tree_leaves(params))
    loaded = edit.LoadedGenerator(module=module, params=params, resolution=resolution, config=config,
                                  step_dir=None, mesh=mesh)
    widths = f"ngf {module.ngf}, {module.n_downsample} down, {module.n_blocks} blocks ({count / 1e6:.1f} M)"
    return api.FaceEditor(edit.Editor(loaded, batch_size=1)), widths


def _serve(app):
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the painter's server did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def _stroke(index: int, resolution: int) -> dict:
    y = resolution // 2 + (index % 5 - 2) * resolution // 16
    x0, x1 = resolution * 3 // 8, resolution * 5 // 8
    return {"class": "mouth" if index % 2 == 0 else "skin", "size": 5,
            "points": [[x0, y], [(x0 + x1) // 2, y + 1], [x1, y]]}


def _http_latency(url: str, session: str, resolution: int, strokes: int) -> list[float]:
    import httpx
    import numpy as np
    from PIL import Image

    timings = []
    with httpx.Client(timeout=600) as client:
        for index in range(strokes):
            started = time.perf_counter()
            answer = client.post(f"{url}/api/sessions/{session}/stroke", content=json.dumps(_stroke(index, resolution)),
                                 headers={"Content-Type": "application/json"})
            answer.raise_for_status()
            png = base64.b64decode(answer.json()["result"].split(",", 1)[1])
            np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
            timings.append((time.perf_counter() - started) * 1000.0)
    return timings


def _browser_latency(url: str, strokes: int) -> list[float] | None:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(url + "/")
        _wait(driver, "document.body.dataset.ready")
        driver.find_element(By.ID, "gallery-0").click()
        _wait(driver, "document.getElementById('result').dataset.version")
        driver.find_element(By.ID, "class-mouth").click()
        canvas = driver.find_element(By.ID, "mask-canvas")
        for index in range(strokes):
            dy = (index % 5 - 2) * 20
            ActionChains(driver).move_to_element_with_offset(canvas, -50, dy).click_and_hold() \
                .move_by_offset(50, 2).move_by_offset(50, -2).release().perform()
            _wait(driver, f"window.paintTimings.length > {index} && !state.busy")
        return [float(t) for t in driver.execute_script("return window.paintTimings;")]
    finally:
        driver.quit()


def _wait(driver, script: str, seconds: float = 600.0) -> None:
    deadline = time.monotonic() + seconds
    while not driver.execute_script(f"return Boolean({script});"):
        if time.monotonic() > deadline:
            raise TimeoutError(script)
        time.sleep(0.02)


def _summary(timings: list[float] | None) -> str:
    if not timings:
        return "n/a"
    ordered = sorted(timings)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return f"{statistics.median(ordered):.0f} / {p90:.0f}"


def measure(variant: str, strokes: int, browser: bool) -> dict:
    from maskgan_jax.paint import faces, server

    editor, widths = _editor(variant)
    paint = server.PaintApp(editor, faces.synthetic_faces(2, editor.resolution))
    started = time.perf_counter()
    first = paint.open({"gallery": 0})
    first_seconds = time.perf_counter() - started
    uv, thread, url = _serve(server.create_app(paint))
    try:
        http = _http_latency(url, first["session"], editor.resolution, strokes)
        in_browser = _browser_latency(url, strokes) if browser else None
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
    return {"variant": variant, "resolution": editor.resolution, "widths": widths, "first_request_s": first_seconds,
            "http_ms": http, "browser_ms": in_browser}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maskgan_jax.benchmarks.paint_latency", description=__doc__)
    parser.add_argument("--variants", default="quickstart,reference_256")
    parser.add_argument("--strokes", type=int, default=15)
    parser.add_argument("--no_browser", action="store_true", help="time through the HTTP API only")
    parser.add_argument("--jax_cache_dir", default="~/.cache/maskgan_jax/jax_cache")
    args = parser.parse_args(argv)

    from maskgan_jax import runtime

    runtime.setup()
    cache = runtime.enable_compilation_cache(args.jax_cache_dir)
    cached_before = len(list(cache.iterdir())) if cache else 0
    import jax

    rows = [measure(v, args.strokes, not args.no_browser) for v in args.variants.split(",") if v]
    print(f"device: {jax.devices()[0].device_kind}, {args.strokes} strokes each; compilation cache "
          f"{cache} ({cached_before} entries before this run)")
    print("| resolution | generator | first request (compile) | HTTP stroke -> image ms, median / p90 "
          "| browser stroke -> image ms, median / p90 |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['resolution']} | {row['widths']} | {row['first_request_s']:.1f} s | {_summary(row['http_ms'])} "
              f"| {_summary(row['browser_ms'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
