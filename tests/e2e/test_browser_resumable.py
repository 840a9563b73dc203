"""The upload page's resumable uploads (app/static/resumable.js) in headless Chromium against a
real app process on `rclone serve s3`: a large file goes to /files/ in chunks and is stored
intact; the network drops midway and the page resumes by itself; the page is reloaded
mid-upload, the same file chosen again, and the page offers to continue it, which it does.

The page's threshold and chunk size (data attributes in index.html) are lowered where a test
needs several chunks of a small file; Chrome's network throttling keeps an upload going long
enough for the drop or the reload to land mid-upload, and the tests wait on the page's own
requests and state, never on time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.clients import get_metric
from harness.forms import write_generated
from harness.processes import wait_until
from harness.store import Bucket, MiB
from tests.e2e.test_browser import start_upload, throttle_uploads, wait_finished

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request, Response

PART = 5 * MiB
TOKEN = "resumable-page-token-0123456789"
#: index.html's data-resumable-from and data-chunk-size.
DEFAULT_THRESHOLD = 128 * MiB
DEFAULT_CHUNK = 32 * MiB


class Network:
    """The page's network as DevTools emulates it: throttled uploads, and offline on demand.

    One DevTools session does both: conditions set from another session (Playwright's
    context.set_offline) would not apply over these."""

    def __init__(self, page: Page, upload_bytes_per_second: int) -> None:
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Network.enable")
        self.upload_bytes_per_second = upload_bytes_per_second
        self.set(offline=False)

    def set(self, *, offline: bool) -> None:
        self.cdp.send(
            "Network.emulateNetworkConditions",
            {
                "offline": offline,
                "latency": 0,
                "downloadThroughput": -1,
                "uploadThroughput": self.upload_bytes_per_second,
            },
        )


def use_chunks(page: Page, *, threshold: int, chunk_size: int) -> None:
    """Set the page's resumable threshold and chunk size, as an operator would in index.html."""
    page.evaluate(
        """([threshold, chunk]) => {
            const uploads = document.getElementById("uploads");
            uploads.dataset.resumableFrom = String(threshold);
            uploads.dataset.chunkSize = String(chunk);
        }""",
        [threshold, chunk_size],
    )


def resumable_requests(page: Page) -> list[tuple[str, str]]:
    """(method, path) of every request the page makes to /files/, kept as they start."""
    seen: list[tuple[str, str]] = []

    def keep(request: Request) -> None:
        path = re.sub(r"^https?://[^/]+", "", request.url)
        if path.startswith("/files/"):
            seen.append((request.method, path))

    page.on("request", keep)
    return seen


def is_stored_append(response: Response) -> bool:
    """A PATCH the service answered 204: one chunk more is stored."""
    return response.request.method == "PATCH" and response.status == 204


def unfinished_entries(page: Page) -> list[str]:
    return list(
        page.evaluate(
            "() => Object.keys(localStorage).filter((k) => k.startsWith('resumable-upload:'))"
        )
    )


def stored_key(bucket: Bucket) -> str:
    """The one object beside the completed upload's bookkeeping."""
    every_key = bucket.keys()
    keys = [key for key in every_key if not key.startswith(".upload-resumable/")]
    assert len(keys) == 1, every_key
    return keys[0]


def test_a_large_file_goes_resumable_and_is_stored_intact(
    bucket: Bucket, start_app: Callable[..., Any], new_page: Callable[..., Page], tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=PART, env={"UPLOAD_AUTH_TOKENS": TOKEN})
    path = tmp_path / "raw footage.mov"
    size = DEFAULT_THRESHOLD + 1  # the page's own threshold and chunk size
    digest = write_generated(path, size)
    page = new_page()
    page.goto(f"{app.url}/")
    requests = resumable_requests(page)

    page.fill("#token", TOKEN)
    page.set_input_files("#file", path)
    assert page.locator("#resume-offer").is_hidden()  # nothing to continue
    item = start_upload(page)
    assert wait_finished(item) == ("stored", "stored")

    methods = [method for method, _ in requests]
    assert methods == ["POST"] + ["PATCH"] * 5, requests  # 4 chunks of 32 MiB and 1 byte
    key = item.locator("dd.key").inner_text()
    assert item.locator("dd.size").inner_text() == f"128.0 MiB ({size} bytes)"
    assert item.locator("dd.sha256").inner_text() == digest
    assert key == stored_key(bucket) and key.endswith("/raw footage.mov")
    assert bucket.sha256(key) == digest
    assert bucket.incomplete_uploads() == []
    assert unfinished_entries(page) == []  # nothing left to continue
    assert get_metric(app.port, "upload_received_bytes_total") == size  # nothing sent twice


def test_the_page_resumes_by_itself_after_the_network_drops(
    bucket: Bucket, start_app: Callable[..., Any], new_page: Callable[..., Page], tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=PART)
    chunk = 8 * MiB
    path = tmp_path / "video.mp4"
    size = 5 * chunk + 11
    digest = write_generated(path, size, seed=3)
    page = new_page()
    page.goto(f"{app.url}/")
    use_chunks(page, threshold=chunk, chunk_size=chunk)
    network = Network(page, 8 * MiB)  # 5 s in all
    requests = resumable_requests(page)

    page.set_input_files("#file", path)
    with page.expect_response(is_stored_append, timeout=60_000):
        item = start_upload(page)
    network.set(offline=True)
    # The next request fails; the page says so and waits to retry, again and again.
    page.wait_for_function(
        "item => Number(item.dataset.retries || 0) >= 2", arg=item.element_handle()
    )
    status = item.locator(".status").inner_text()
    assert re.fullmatch(r"the connection failed · retrying in \d+ s", status), status
    assert item.get_attribute("data-state") == "uploading"
    network.set(offline=False)
    assert wait_finished(item) == ("stored", "stored")

    assert int(item.get_attribute("data-resumed-at") or 0) >= chunk
    (created,) = [path for method, path in requests if method == "POST"]
    upload_url = next(path for method, path in requests if method == "PATCH")
    assert created == "/files/" and ("HEAD", upload_url) in requests  # asked, then continued
    key = item.locator("dd.key").inner_text()
    assert item.locator("dd.sha256").inner_text() == digest
    assert key == stored_key(bucket)
    assert bucket.sha256(key) == digest
    assert bucket.incomplete_uploads() == []
    assert unfinished_entries(page) == []
    # What went again is at most the chunk the drop cut.
    assert get_metric(app.port, "upload_received_bytes_total") <= size + chunk


def test_after_a_reload_the_page_offers_to_continue_the_same_file(
    bucket: Bucket, start_app: Callable[..., Any], new_page: Callable[..., Page], tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=PART)
    chunk = 8 * MiB
    path = tmp_path / "archive.zip"
    size = 5 * chunk + 7
    digest = write_generated(path, size, seed=5)
    page = new_page()
    page.goto(f"{app.url}/")
    use_chunks(page, threshold=chunk, chunk_size=chunk)
    throttle_uploads(page, 8 * MiB)

    page.set_input_files("#file", path)
    with page.expect_response(is_stored_append, timeout=60_000):
        start_upload(page)
    (entry,) = unfinished_entries(page)
    page.reload()  # cuts the PATCH in flight
    use_chunks(page, threshold=chunk, chunk_size=chunk)
    requests = resumable_requests(page)
    assert unfinished_entries(page) == [entry]

    page.set_input_files("#file", path)
    offer = page.locator("#resume-offer")
    offer.wait_for(state="visible")
    assert page.inner_text("#resume-text") == (
        "“archive.zip” was partly uploaded before: continue where it stopped, or start over."
    )
    index = page.locator("li.upload").count()
    page.click("#resume-button")
    item = page.locator(f"li.upload:nth-child({index + 1})")
    assert wait_finished(item) == ("stored", "stored")
    assert offer.is_hidden()

    # The upload continued: HEAD first, no new creation, from where the server stood.
    assert requests[0][0] == "HEAD" and ("POST", "/files/") not in requests, requests
    assert int(item.get_attribute("data-resumed-at") or 0) >= chunk
    key = item.locator("dd.key").inner_text()
    assert item.locator("dd.sha256").inner_text() == digest
    assert key == stored_key(bucket)
    assert bucket.sha256(key) == digest
    assert bucket.incomplete_uploads() == []
    assert unfinished_entries(page) == []


def test_cancel_and_start_over_leave_nothing_in_storage(
    bucket: Bucket, start_app: Callable[..., Any], new_page: Callable[..., Page], tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=PART)
    chunk = 8 * MiB
    path = tmp_path / "big.bin"
    write_generated(path, 4 * chunk, seed=9)
    page = new_page()
    page.goto(f"{app.url}/")
    use_chunks(page, threshold=chunk, chunk_size=chunk)
    throttle_uploads(page, 8 * MiB)

    # Cancel mid-upload: the page terminates the upload (DELETE).
    page.set_input_files("#file", path)
    with page.expect_response(is_stored_append, timeout=60_000):
        item = start_upload(page)
    with page.expect_response(lambda r: r.request.method == "DELETE" and r.status == 204):
        item.locator(".cancel").click()
    assert wait_finished(item) == ("cancelled", "cancelled")
    assert unfinished_entries(page) == []
    assert bucket.keys() == [] and bucket.incomplete_uploads() == []

    # Interrupted by a reload, then "Start over": the old upload is terminated too.
    page.set_input_files("#file", path)
    with page.expect_response(is_stored_append, timeout=60_000):
        start_upload(page)
    page.reload()
    page.set_input_files("#file", path)
    page.locator("#resume-offer").wait_for(state="visible")
    with page.expect_response(lambda r: r.request.method == "DELETE" and r.status == 204):
        page.click("#restart-button")
    assert page.locator("#resume-offer").is_hidden()
    assert unfinished_entries(page) == []
    assert wait_until(lambda: bucket.keys() == [] and not bucket.incomplete_uploads(), 10)
