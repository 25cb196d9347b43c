"""The painter end to end in real headless Chromium (Debian's `chromium` and `chromium-driver`, driven
by Selenium): open a face, paint a stroke with the mouth brush, see the result change, undo restores
the mask exactly, save downloads a PNG whose labels equal the painted mask; and a bad upload shows
its message on the page, as does a file over the size limit. `make test` installs Chromium when it is missing.

PAINT_SCREENSHOTS=DIR keeps the page's screenshots there (the README's come from a trained run)."""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image

import maskgan_jax
from maskgan_jax import mask_io
from maskgan_jax.paint import faces, server
import paint_fixtures as fx
from tfds_celebamask import labels

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
MOUTH = labels.CLASS_ID["mouth"]
TIMEOUT = 60.0  # seconds any one wait may take on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, compilation_cache):
    """The painter served by uvicorn on 127.0.0.1 in a thread, on the smoke checkpoint."""
    editor = maskgan_jax.load_editor(fx.make_workdir(tmp_path_factory.mktemp("paint_browser")), batch_size=1)
    paint = server.PaintApp(editor, faces.synthetic_faces(3, editor.resolution), max_upload_bytes=100_000)
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(server.create_app(paint), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def browser(tmp_path):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: this test needs Debian's chromium and chromium-driver; "
                    "`make test` installs them (apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                 "--disable-gpu", "--force-color-profile=srgb"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.downloads = downloads
    yield driver
    driver.quit()


def wait_for(driver, script, what):
    """Polls a JS expression until it is truthy (bounded by TIMEOUT); returns its value."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script};")
        if value:
            return value
        time.sleep(0.05)
    error = driver.execute_script("return document.getElementById('error').textContent;")
    raise AssertionError(f"timed out waiting for {what} (page error: {error!r})")


def page_mask(driver) -> np.ndarray:
    flat = driver.execute_script("return Array.from(state.labels);")
    width, height = driver.execute_script("return [state.width, state.height];")
    return np.asarray(flat, np.uint8).reshape(height, width)


def screenshot(driver, name):
    folder = os.environ.get("PAINT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def test_paint_a_mouth_stroke_undo_and_save_in_chromium(page_url, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(page_url)
    wait_for(browser, "document.body.dataset.ready", "the page to start")
    browser.find_element(By.ID, "gallery-0").click()
    wait_for(browser, "document.getElementById('result').dataset.version", "the first result")
    before_mask = page_mask(browser)
    before_result = browser.execute_script("return document.getElementById('result').src;")
    version = int(browser.execute_script("return document.getElementById('result').dataset.version;"))

    browser.find_element(By.ID, "class-mouth").click()
    browser.execute_script("const s = document.getElementById('brush-size'); s.value = 5; s.oninput();")
    canvas = browser.find_element(By.ID, "mask-canvas")
    # The 64x64 mask is shown 320 px wide: 5 screen px per mask pixel. A stroke from (20, 44) to (44, 44).
    ActionChains(browser).move_to_element_with_offset(canvas, -60, 60).click_and_hold() \
        .move_by_offset(40, 0).move_by_offset(40, 0).move_by_offset(40, 0).release().perform()
    wait_for(browser, f"document.getElementById('result').dataset.version > {version}", "the stroke's result")
    painted = page_mask(browser)
    changed = painted != before_mask
    assert changed.sum() > 20 and (painted[changed] == MOUTH).all()
    rows = np.nonzero(changed.any(axis=1))[0]
    assert rows.min() >= 40 and rows.max() <= 48  # a 5-pixel brush around y = 44
    assert browser.execute_script("return document.getElementById('result').src;") != before_result
    timings = browser.execute_script("return window.paintTimings;")
    assert len(timings) == 1 and timings[0] > 0
    screenshot(browser, "paint_stroke.png")

    browser.find_element(By.ID, "undo").click()
    wait_for(browser, "document.getElementById('undo').disabled", "undo")
    np.testing.assert_array_equal(page_mask(browser), before_mask)
    browser.find_element(By.ID, "redo").click()
    wait_for(browser, "document.getElementById('redo').disabled", "redo")
    np.testing.assert_array_equal(page_mask(browser), painted)

    browser.find_element(By.ID, "save-mask").click()
    saved = browser.downloads / "maskgan_mask.png"
    deadline = time.monotonic() + TIMEOUT
    while not saved.is_file():
        assert time.monotonic() < deadline, f"no download in {list(browser.downloads.iterdir())}"
        time.sleep(0.05)
    time.sleep(0.2)  # Chromium renames the finished file into place; let it settle
    np.testing.assert_array_equal(np.asarray(Image.open(saved)), painted)


def test_a_bad_upload_shows_its_message_on_the_page(page_url, browser, tmp_path):
    from selenium.webdriver.common.by import By

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is not an image")
    browser.get(page_url)
    wait_for(browser, "document.body.dataset.ready", "the page to start")
    browser.find_element(By.ID, "photo-file").send_keys(str(not_an_image))
    browser.find_element(By.ID, "mask-file").send_keys(str(not_an_image))
    browser.find_element(By.ID, "open-upload").click()
    message = wait_for(browser, "document.getElementById('error').textContent", "the error message")
    assert "image: not a readable image file" in message
    screenshot(browser, "paint_error.png")
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 150_000)
    browser.find_element(By.ID, "photo-file").send_keys(str(big))
    browser.find_element(By.ID, "open-upload").click()
    wait_for(browser, "document.getElementById('error').textContent.includes('big.png')", "the size message")
    assert "over the upload limit of 100,000 bytes" in browser.execute_script(
        "return document.getElementById('error').textContent;")
    # the server still serves: a gallery face opens
    browser.find_element(By.ID, "gallery-1").click()
    wait_for(browser, "document.getElementById('result').dataset.version", "a result after the error")
    assert browser.execute_script("return document.getElementById('error').textContent;") == ""


def test_transfer_queued_strokes_and_the_interpolation_slider(page_url, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    gallery = faces.synthetic_faces(3, 64)  # the server's gallery: the same seed, the same faces
    browser.get(page_url)
    wait_for(browser, "document.body.dataset.ready", "the page to start")
    browser.find_element(By.ID, "gallery-0").click()
    wait_for(browser, "document.getElementById('result').dataset.version", "the first result")
    browser.find_element(By.ID, "gallery-ref-2").click()
    wait_for(browser, "!document.getElementById('transfer').disabled && !state.busy", "the reference")
    browser.find_element(By.CSS_SELECTOR, "#transfer-classes input[value=hair]").click()
    browser.find_element(By.ID, "transfer").click()
    wait_for(browser, "!document.getElementById('undo').disabled && !state.busy", "the transfer")
    transferred = mask_io.transfer_classes(gallery[0].mask, gallery[2].mask, (labels.CLASS_ID["hair"],))
    np.testing.assert_array_equal(page_mask(browser), transferred)

    # two strokes back to back: the second is drawn while the first renders, and both land
    browser.find_element(By.ID, "class-mouth").click()
    canvas = browser.find_element(By.ID, "mask-canvas")
    for dy in (-140, 140):  # mask rows 4 and 60
        ActionChains(browser).move_to_element_with_offset(canvas, -50, dy).click_and_hold() \
            .move_by_offset(100, 0).release().perform()
    wait_for(browser, "window.paintTimings.length === 2 && !state.busy && pending.length === 0", "both strokes")
    painted = page_mask(browser)
    assert (painted[4, 24:41] == MOUTH).all() and (painted[60, 24:41] == MOUTH).all()

    version = int(browser.execute_script("return document.getElementById('result').dataset.version;"))
    browser.execute_script("const s = document.getElementById('interpolate'); s.value = 50; s.onchange();")
    wait_for(browser, f"document.getElementById('result').dataset.version > {version} && !state.busy", "the slider")
    walked = page_mask(browser)
    assert walked.max() < 19 and not np.array_equal(walked, painted)
    browser.find_element(By.ID, "undo").click()
    wait_for(browser, f"document.getElementById('result').dataset.version > {version + 1} && !state.busy", "undo")
    np.testing.assert_array_equal(page_mask(browser), painted)
