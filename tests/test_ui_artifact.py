"""The plant-health artifact in the real Prefect UI, in a real headless Chromium (Debian's
/usr/bin/chromium, driven by Playwright; `.ci/run` installs it): the pictures the hourly flow
embeds are shown inline, decoded at their full size, above the open alarms' table.

temperature_etl runs on the test harness's server (which serves no UI); its artifact is then
stored as it is on a full `prefect server start` (which does) and opened there. The screenshot
is written to MONTRG_SCREENSHOT when set (the closing notes describe it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import polars as pl
import pytest

from flows import store
from tests.helpers import unique
from tests.test_alerts import every, health_artifact, run_hour, set_locations

CHROMIUM = os.environ.get("MONTRG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"),
]


async def test_the_plant_health_pictures_render_inline_in_the_prefect_ui(db_pair, full_prefect_server, tmp_path):
    from playwright.async_api import async_playwright

    source, target = await db_pair("postgresql->postgresql")
    p = unique("UI")
    await set_locations(target, [(f"{p}-FULL", True, 300), (f"{p}-SILENT", True, 300), (f"{p}-HALF", True, 300)])
    await store.insert_raw(source.db, pl.concat([every(f"{p}-FULL", range(0, 60, 5)), every(f"{p}-HALF", range(0, 30, 5))]))
    await run_hour(source, target)
    markdown = await health_artifact()

    api = full_prefect_server["PREFECT_API_URL"]
    async with httpx.AsyncClient() as client:
        stored = await client.post(f"{api}/artifacts/", json={"key": "plant-health", "type": "markdown", "data": markdown})
    stored.raise_for_status()
    page_url = f"{api.removesuffix('/api')}/artifacts/artifact/{stored.json()['id']}"

    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1800})
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(page_url, wait_until="networkidle", timeout=60_000)
            await page.wait_for_function(
                "() => { const i = [...document.querySelectorAll('img[alt]')].filter(e => e.src.startsWith('data:image/png'));"
                " return i.length >= 2 && i.every(e => e.complete); }",
                timeout=30_000,
            )
            # each picture: its natural size, its drawn width and top, and whether it decodes whole
            # (a truncated PNG still has its header's size; its last rows stay transparent)
            images = await page.eval_on_selector_all(
                "img[src^='data:image/png']",
                """async els => Promise.all(els.map(async e => {
                    let whole = true;
                    try { await e.decode(); } catch (err) { whole = false; }
                    const c = document.createElement('canvas');
                    c.width = e.naturalWidth; c.height = e.naturalHeight;
                    const g = c.getContext('2d'); g.drawImage(e, 0, 0);
                    const corner = g.getImageData(Math.max(c.width - 2, 0), Math.max(c.height - 2, 0), 1, 1).data[3];
                    const box = e.getBoundingClientRect();
                    return [e.alt, e.naturalWidth, e.naturalHeight, Math.round(box.width), Math.round(box.top), whole && corner === 255];
                }))""",
            )
            headings = await page.eval_on_selector_all("h1, h2", "els => els.map(e => [e.innerText, Math.round(e.getBoundingClientRect().top)])")
            body = await page.inner_text("body")
            await page.screenshot(path=os.environ.get("MONTRG_SCREENSHOT") or str(tmp_path / "plant-health.png"), full_page=True)
        finally:
            await browser.close()

    assert not errors, errors
    # both pictures decoded (a broken data URI has natural size 0) and laid out on the page
    assert [alt for alt, *_ in images] == ["coverage grid", "limits charts"]
    assert all(w > 300 and h > 100 and shown > 300 and whole for _, w, h, shown, _, whole in images), images
    # the open alarms come first, then the pictures, then the table of hours
    top = {text: y for text, y in headings}
    alarms = next(y for text, y in top.items() if text.startswith("Open alarms: "))
    assert alarms < images[0][4] < images[1][4]
    assert next(y for text, y in top.items() if text.startswith("Coverage and open alerts by hour")) > images[1][4]
    assert f"{p}-SILENT" in body and f"{p}-HALF" in body
