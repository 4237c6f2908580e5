"""The dashboard in headless Chromium: charts drawn offline by the vendored uPlot."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import REPO, LiveServer

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EMAIL, PASSWORD = "grace@example.com", "correct horse battery"

if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium: apt-get install -y chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")


def test_dashboard_charts_render_offline(live_server: LiveServer) -> None:
    now = time.time_ns()
    spans = [
        {
            "traceId": f"{i:032x}",
            "spanId": f"{i:016x}",
            "name": "chat",
            "startTimeUnixNano": str(now - i * 30_000_000_000),
            "endTimeUnixNano": str(now - i * 30_000_000_000 + (100 + i) * 1_000_000),
            "attributes": [
                {"key": "gen_ai.request.model", "value": {"stringValue": f"m{i % 2}"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "10"}},
            ],
        }
        for i in range(1, 40)
    ]
    body = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    with live_server.client() as api:
        api.post("/v1/traces", json=body).raise_for_status()
        user = {"email": EMAIL, "password": PASSWORD, "name": "Grace"}
        api.post("/api/users", json=user).raise_for_status()
        api.put("/api/members", json={"email": EMAIL, "role": "admin"}).raise_for_status()
    errors: list[str] = []
    outside: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": 1360, "height": 900}
        )
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "request",
            lambda r: outside.append(r.url) if not r.url.startswith(live_server.url) else None,
        )
        page.goto("/sign-in")
        page.fill("input[name=email]", EMAIL)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.goto("/monitoring?window=1h&group_by=model")
        page.wait_for_selector("[data-chart=latency] canvas")
        assert page.locator(".chart canvas").count() == 6
        legend = page.locator("[data-chart=requests] .u-legend").inner_text()
        assert "m0" in legend and "m1" in legend
        shots = REPO / "test-artifacts" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "monitoring-dashboard.png"), full_page=True)
        browser.close()
    assert errors == [] and outside == []
