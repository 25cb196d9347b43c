"""Remakes the README's screenshots of the painter from a trained run, in headless Chromium.

    python docs/make_paint_screenshots.py --checkpoint=workdir/quickstart --out=docs

Opens synthetic face 1, takes face 3 as the reference, transfers its hair, paints a mouth stroke
(docs/paint.png); then uploads a mask with a colour outside the palette (docs/paint_error.png).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from maskgan_jax import mask_io
    from maskgan_jax.benchmarks import paint_latency
    from maskgan_jax.paint import build_parser, make_app

    app, _ = make_app(build_parser().parse_args([f"--checkpoint={args.checkpoint}", "--gallery=6"]))
    uv, thread, url = paint_latency._serve(app)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--window-size=1400,900", "--force-color-profile=srgb"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    out = Path(args.out)
    try:
        driver.get(url + "/")
        paint_latency._wait(driver, "document.body.dataset.ready")
        driver.find_element(By.ID, "gallery-1").click()
        paint_latency._wait(driver, "document.getElementById('result').dataset.version")
        driver.find_element(By.ID, "gallery-ref-3").click()
        paint_latency._wait(driver, "!document.getElementById('transfer').disabled && !state.busy")
        driver.find_element(By.CSS_SELECTOR, "#transfer-classes input[value=hair]").click()
        driver.find_element(By.ID, "transfer").click()
        paint_latency._wait(driver, "!state.busy && document.getElementById('undo').disabled === false")
        driver.find_element(By.ID, "class-mouth").click()
        canvas = driver.find_element(By.ID, "mask-canvas")
        ActionChains(driver).move_to_element_with_offset(canvas, -40, 75).click_and_hold() \
            .move_by_offset(40, 8).move_by_offset(40, -8).release().perform()
        paint_latency._wait(driver, "window.paintTimings.length > 0 && !state.busy")
        driver.execute_script("window.scrollTo(0, 0);")
        driver.save_screenshot(str(out / "paint.png"))

        bad = np.zeros((64, 64, 3), np.uint8)
        bad[10, 20] = (1, 2, 3)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "bad_mask.png"
            mask_io.write_image(path, bad)
            driver.find_element(By.ID, "reference-file").send_keys(str(path))
            driver.find_element(By.ID, "reference-upload").click()
            paint_latency._wait(driver, "document.getElementById('error').textContent")
            time.sleep(0.2)
            driver.execute_script("window.scrollTo(0, 0);")
            driver.save_screenshot(str(out / "paint_error.png"))
    finally:
        driver.quit()
        uv.should_exit = True
        thread.join(timeout=10)


if __name__ == "__main__":
    main()
