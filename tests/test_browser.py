"""The browsable API in a real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright; no browser download): styled by the static files WhiteNoise serves from
gunicorn, and a user can PUT a value through the page's own form, see it, and DELETE it
through the page's own button. Real instance, real broker."""

import json
import os
import uuid

import pytest

from kvstore import log, topics
from tests.instances import Instance, isolated_settings

CHROMIUM = "/usr/bin/chromium"
# Headless on a shared machine with no network: nothing phones home, no sandbox (root).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"no Chromium at {CHROMIUM} (as root: apt-get install -y chromium; "
    ".ci/run does it)",
)


@pytest.fixture(scope="module")
def instance(kafka_bootstrap, tmp_path_factory):
    settings = isolated_settings(kafka_bootstrap)
    with log.admin(settings) as admin:
        topics.ensure(admin, settings)
    node = Instance(settings, tmp_path_factory.mktemp("browser")).start()
    yield node
    node.stop()


@pytest.fixture
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh user-data dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 1100},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def response_status(page):
    """The status line the browsable API shows, e.g. 'HTTP 200 OK'."""
    return page.locator(".response-info pre .meta").first.inner_text().splitlines()[0]


def test_a_user_puts_sees_and_deletes_a_value_through_the_page(
    instance, page, tmp_path
):
    key = f"browser-{uuid.uuid4().hex[:8]}"
    value = {"greeting": "hello from Chromium", "n": 42}
    assets = []
    page.on(
        "response",
        lambda r: (
            assets.append((r.url, r.status, r.headers.get("content-type", "")))
            if "/static/" in r.url
            else None
        ),
    )

    page.goto(f"{instance.url}/api/kv/{key}")
    assert response_status(page) == "HTTP 404 Not Found"

    stylesheets = [a for a in assets if a[0].endswith(".css")]
    assert stylesheets and all(
        status == 200 and content_type.startswith("text/css")
        for _, status, content_type in stylesheets
    ), assets
    assert any("bootstrap.min" in url for url, _, _ in stylesheets)
    assert any(url.endswith(".js") and status == 200 for url, status, _ in assets)
    navbar = page.evaluate(
        "getComputedStyle(document.querySelector('.navbar')).backgroundColor"
    )
    assert navbar not in ("", "rgba(0, 0, 0, 0)"), "Bootstrap's navbar style applies"

    # PUT through the page's own raw-data form (its JavaScript sends the request).
    form = page.locator("#put-generic-content-form form")
    form.locator("select[name=_content_type]").select_option("application/json")
    form.locator("textarea[name=_content]").fill(json.dumps(value))
    with page.expect_response(lambda r: r.request.method == "PUT") as put:
        form.locator("button", has_text="PUT").click()
    assert put.value.status == 201
    page.wait_for_selector("text=HTTP 201 Created")

    stored = instance.api("GET", f"/api/kv/{key}")
    assert stored.status_code == 200 and stored.json() == value

    page.goto(f"{instance.url}/api/kv/{key}")
    assert response_status(page) == "HTTP 200 OK"
    shown = page.locator(".response-info pre").inner_text()
    assert "hello from Chromium" in shown and "42" in shown
    screenshot = tmp_path / "browsable-api.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    # DELETE through the page's button and its confirmation dialog.
    page.locator("button[data-target='#deleteModal']").click()
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        page.locator("#deleteModal form button", has_text="Delete").click()
    # The page shows the API's 204 (the browsable renderer sends it to browsers as 200,
    # with the page).
    assert deleted.value.ok
    page.wait_for_selector("text=HTTP 204 No Content")
    assert instance.api("GET", f"/api/kv/{key}").status_code == 404
