"""The cluster page (/cluster/) in a real headless Chromium, over two real instances:
its styles and script come from the store's own static files, it draws every member
and every partition coloured by owner, and it refreshes itself: a write shows up in
the partition's applied offset without a reload. Leaves a screenshot in the test's
tmp dir."""

import re

from tests import test_browser
from tests.test_browser import page  # noqa: F401  (the Chromium page fixture)
from tests.test_cluster import owner_of

pytestmark = test_browser.pytestmark


def test_the_page_draws_members_partitions_and_lag_and_refreshes_itself(
    two_instances, page, tmp_path  # noqa: F811
):
    node = two_instances[0]
    assets = []
    page.on("response", lambda r: assets.append((r.url, r.status)))
    page.goto(f"{node.url}/cluster/")
    page.wait_for_selector("#map .tile[data-state=ready]")
    page.wait_for_function(
        "document.querySelectorAll('#map .tile[data-state=ready]').length === 4"
    )
    static = [(url, code) for url, code in assets if "/static/kvstore/" in url]
    assert {url.rsplit(".", 1)[-1] for url, _ in static} == {"css", "js"}, assets
    assert all(code == 200 for _, code in static), static
    assert page.inner_text("#summary") == "all 4 partitions served"

    members = page.inner_text("#members")
    for each in two_instances:
        assert each.url.removeprefix("http://") in members
    colours = page.eval_on_selector_all(
        "#map .tile", "tiles => tiles.map(t => getComputedStyle(t).backgroundColor)"
    )
    assert len(set(colours)) == 2, "one colour per owner"
    owners = page.eval_on_selector_all(
        "#map .tile .owner", "spans => spans.map(s => s.textContent)"
    )
    described = node.api("GET", "/api/cluster").json()["owners"]
    assert owners == [described[str(p)].removeprefix("http://") for p in range(4)]

    key = "on-the-page"
    owner = next(n for n in two_instances if n.url == owner_of(node, key))
    written = owner.api("PUT", f"/api/kv/{key}", json="seen")
    partition, offset = written.headers["ETag"].strip('"').split("-")
    cell = f"#lag-rows tr[data-partition='{partition}'] td:last-child .figures"
    # "lag · applied / end": the applied offset passes the write's, unprompted.
    page.wait_for_function(
        "([selector, offset]) => {"
        "  const text = document.querySelector(selector).textContent;"
        "  const applied = text.split('·')[1].split('/')[0];"
        "  return Number(applied.replace(/[^0-9]/g, '')) > offset;"
        "}",
        arg=[cell, int(offset)],
        timeout=10000,
    )
    assert re.fullmatch(r"0 · [0-9,]+ / [0-9,]+", page.inner_text(cell))
    assert int(page.get_attribute("#cluster", "data-refreshes")) >= 2

    screenshot = tmp_path / "cluster-page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 20_000
