"""A real browser: headless Debian Chromium logs in, opens an account page and reads the
rendered chart and figures (Chrome DevTools Protocol over a stdlib websocket)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import uvicorn

from tests.notify.conftest import free_port
from tests.web.cdp import Browser, install_chromium
from tests.web.demodata import HACKED, Demo, money2


@pytest.fixture(scope="module")
def chromium() -> str:
    path = install_chromium()
    if path is None:
        message = (
            "no chromium: `apt-get install -y chromium` (Debian's package) to run browser tests"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def server(demo: Demo) -> Iterator[str]:
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(demo.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_login_and_account_page_in_chromium(
    demo: Demo, chromium: str, server: str, tmp_path: Path
) -> None:
    browser = Browser(chromium, timeout=30)
    try:
        browser.goto(f"{server}/login?next=/")
        browser.eval(
            "document.getElementById('username').value = 'analyst';"
            f"document.getElementById('password').value = {demo.password('analyst')!r};"
            "document.getElementById('login').click();"
        )
        browser.wait_for("location.pathname === '/' && document.readyState === 'complete'")
        assert browser.eval("document.getElementById('who').textContent").startswith("analyst")
        # the session cookie is HttpOnly: page scripts cannot read it
        assert "tg_session" not in browser.eval("document.cookie")
        day = demo.hack_day
        browser.goto(f"{server}/accounts/{HACKED}?day={day}")
        bars = browser.eval("document.querySelectorAll('#chart-calls rect.bar').length")
        assert bars > 0
        # the chart is laid out by the browser: real boxes with height
        height = browser.eval(
            "Math.max(...[...document.querySelectorAll('#chart-calls rect.bar')]"
            ".map(r => r.getBoundingClientRect().height))"
        )
        assert height > 50
        frame = demo.rated.filter((pl.col("account") == HACKED) & (pl.col("lday") == day))
        expected = f"EUR {money2(int(frame.get_column('cost_e4').sum()))}"
        assert browser.eval("document.getElementById('spend-today').textContent.trim()") == expected
        assert (
            browser.eval("getComputedStyle(document.querySelector('header.top')).display") == "flex"
        )
        browser.screenshot(tmp_path / "account.png")
        assert (tmp_path / "account.png").stat().st_size > 10_000
    finally:
        browser.close()
