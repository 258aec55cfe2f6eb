"""The operator dashboard in a real browser: Debian's chromium driven by Playwright (no browser download) against
a real service on 127.0.0.1, with a model that really answers (tests/memorised.py: rope + cardboard).

The page asks for the token, shows the live frame with the rope box in the warning colour, an alert appears,
it is acknowledged with a click, and after the service restarts on the same SQLite file the alert is still
acknowledged. Set JAMSPOTTER_DASHBOARD_SCREENSHOT=PATH to keep the screenshot (docs/images/dashboard.png).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from memorised import SCENE, SIZE, memorise, write_scene

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).is_file()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium is not installed (apt-get install chromium)")

TOKEN = "operator-token"
FRAMES = 3


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The memorised tiny model (trained here, ~10 s), loaded once."""
    from jamspotter.infer import Detector

    return Detector(memorise(tmp_path_factory.mktemp("memorised")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pixel(page: Any, x: int, y: int) -> list[int]:
    """RGB of the live frame's picture at (x, y) in its own pixels, read back through a canvas in the page."""
    return page.evaluate("""([x, y]) => {
        const img = document.getElementById("live");
        const canvas = document.createElement("canvas");
        canvas.width = img.naturalWidth;
        canvas.height = img.naturalHeight;
        const ctx = canvas.getContext("2d");
        ctx.drawImage(img, 0, 0);
        return Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3));
    }""", [x, y])


def close(a: list[int], b: tuple[int, int, int], tol: int = 40) -> bool:
    return max(abs(int(u) - int(v)) for u, v in zip(a, b, strict=True)) < tol


def test_dashboard_in_chromium_frame_alert_ack_and_restart(tmp_path: Path, detector: Any) -> None:
    from jamspotter.infer.draw import JAM_COLOR, MATERIAL_COLOR
    from jamspotter.serve.app import create_app
    from jamspotter.serve.dashboard import LIVE_SIDE
    from jamspotter.serve.server import running_server
    from jamspotter.serve.settings import ServeSettings

    scene = write_scene(tmp_path / "scene") / "images" / "scene.png"
    belt = tmp_path / "belt"
    belt.mkdir()
    for i in range(FRAMES):
        shutil.copy(scene, belt / f"frame{i}.png")
    settings = ServeSettings(model="memorised", token=TOKEN, port=free_port(), stream=str(belt),
                             db=tmp_path / "alerts.db", stream_interval=0.5, alert_cooldown=60.0)
    url = f"http://127.0.0.1:{settings.port}/"

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            with running_server(create_app(settings, detector=detector), port=settings.port):
                page.goto(url)
                # the service has a token: the page asks once, then keeps it
                page.wait_for_selector("#token-dialog[open]", timeout=10_000)
                page.fill("#token-input", TOKEN)
                page.click("#token-save")
                page.wait_for_function("document.getElementById('live').src.startsWith('data:image/jpeg')",
                                       timeout=20_000)
                assert page.evaluate("localStorage.getItem('jamspotter.token')") == TOKEN

                # the frame with its boxes: the rope's left edge in the warning colour, the cardboard's in blue
                scale = LIVE_SIDE[0] / max(SIZE)
                rope, cardboard = SCENE["rope"][3], SCENE["cardboard"][3]
                assert page.evaluate("document.getElementById('live').naturalWidth") == round(SIZE[0] * scale)
                mid = round((rope[1] + rope[3]) / 2 * scale)
                assert close(pixel(page, round(rope[0] * scale), mid), JAM_COLOR)
                assert close(pixel(page, round(rope[0] * scale) - 6, mid), (70, 70, 70))  # belt beside it
                mid = round((cardboard[1] + cardboard[3]) / 2 * scale)
                assert close(pixel(page, round(cardboard[0] * scale), mid), MATERIAL_COLOR)
                assert "rope" in page.inner_text("#detections") and "cardboard" in page.inner_text("#detections")

                # one alert (the same rope in every frame, within the cooldown), with its thumbnail
                page.wait_for_selector(".alert.open", timeout=20_000)
                item = page.locator(".alert").first
                assert item.get_attribute("data-id") == "1" and "rope" in item.inner_text().lower()
                page.wait_for_function("document.querySelector('.alert .thumb').naturalWidth > 0", timeout=10_000)
                page.wait_for_function("Number(document.querySelector('.count-row.jam .n')?.textContent) >= 1",
                                       timeout=10_000)
                page.screenshot(path=str(tmp_path / "dashboard.png"))
                keep = os.environ.get("JAMSPOTTER_DASHBOARD_SCREENSHOT")
                if keep:
                    shutil.copy(tmp_path / "dashboard.png", keep)

                page.click(".alert.open .ack")
                page.wait_for_selector('.alert.acked[data-id="1"]', timeout=10_000)
                assert page.inner_text("#open-count") == "0"
                page.check("#alarm-toggle")  # sound and flash for the next alert

            # restart on the same SQLite file (same port): the open page reconnects by itself ...
            with running_server(create_app(settings, detector=detector), port=settings.port):
                page.wait_for_selector("#conn.live", timeout=20_000)
                page.wait_for_selector('.alert.acked[data-id="1"]', timeout=10_000)
                # the restarted stream sees the rope again: a new alert, and the page flashes for it
                page.wait_for_selector('.alert.open[data-id="2"]', timeout=20_000)
                page.wait_for_selector("body.flash", state="attached", timeout=5_000)
                # ... and a fresh load shows the same, from the database
                page.reload()
                page.wait_for_selector('.alert[data-id="1"]', timeout=20_000)
                assert "acked" in page.get_attribute('.alert[data-id="1"]', "class")
                assert not page.is_visible("#token-dialog[open]")  # the token was kept
            assert errors == []
        finally:
            browser.close()
