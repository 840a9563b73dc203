"""tus-js-client, the tus project's own browser client (4.3.1 from npm, tests/e2e/js), in
headless Chromium, uploads to /files/ through the shipped nginx config, in each protocol it
speaks: tus 1.0 (`tus-v1`) and the IETF draft at interop versions 5 (`ietf-draft-03`) and
6 (`ietf-draft-05`).

The page is on nginx's origin (Playwright answers its own few URLs, then lets go), so the
uploads are same-origin as an application's would be. Between nginx and the app sits
harness/cutting_proxy.py: it counts the bytes that reach the app and, where a test says
so, holds a PATCH at a chosen byte and then resets its connection. tus-js-client is left to
do what it does: its own retries (HEAD, then PATCH from the offset the server answers), and
its own record of unfinished uploads in localStorage across a page reload.

Each finished upload is read back (SHA-256), and the bucket must hold the object and the
small completed state record only: no multipart upload, no tail.

On `rclone serve s3` a GetObject of state.json that overlaps its PutObject can come back
truncated; here it happened when tus-js-client's HEAD right after the cut met the cut
request's last write of the state. The app reads a torn state again
(app/resumable/state.py): a 502 there would make tus-js-client drop the upload and start a
new one from byte 0, which these tests catch (the upload's URL must not change).
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from harness.cutting_proxy import CuttingProxy
from harness.nginx import Nginx
from harness.processes import wait_until
from harness.servers import AppServer
from harness.store import Bucket, MiB, sha256
from tests.e2e.conftest import Capture, StartApp, StartNginx

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

PROTOCOLS = ["tus-v1", "ietf-draft-03", "ietf-draft-05"]
#: What tus-js-client sends on every request but OPTIONS, per protocol.
PROTOCOL_HEADERS = {
    "tus-v1": {"Tus-Resumable": "1.0.0"},
    "ietf-draft-03": {"Upload-Draft-Interop-Version": "5"},
    "ietf-draft-05": {"Upload-Draft-Interop-Version": "6"},
}
#: HEAD answers 200 in tus 1.0, 204 in the IETF drafts.
HEAD_STATUS = {"tus-v1": 200, "ietf-draft-03": 204, "ietf-draft-05": 204}
#: The refusals a PATCH may meet right after a cut, while the cut request is still being
#: wound up: its lease is held (423 in tus 1.0, 409 in the drafts), or the HEAD before it
#: was answered just before the cut request's last bytes were recorded (409).
RETRIED_REFUSALS = {
    "tus-v1": {(423, "upload_locked"), (409, "offset_mismatch")},
    "ietf-draft-03": {(409, "upload_locked"), (409, "offset_mismatch")},
    "ietf-draft-05": {(409, "upload_locked"), (409, "offset_mismatch")},
}

JS = Path(__file__).parent / "js"
TUS_JS_CLIENT = JS / "node_modules" / "tus-js-client"
TUS_JS_CLIENT_VERSION = "4.3.1"
DRIVER = JS / "tus-driver.js"

TOKEN = "tus-js-token-0123456789abcdef"
PART_SIZE = 5 * MiB
SIZE = 24 * MiB
NAME = "holiday video.bin"
#: Fixed, so a reloaded page makes a File with the same fingerprint (name, type, size, date).
LAST_MODIFIED_MS = 1_764_000_000_000
#: Where the PATCH is held and cut: past two whole parts, into the third.
CUT_AT = 12 * MiB + 345_678

#: Playwright answers these paths on nginx's origin; everything else goes to nginx.
TEST_PATH = "/tus-js-client-test/"
PAGE = (
    b'<!doctype html><meta charset="utf-8"><title>tus-js-client</title>'
    b'<script src="tus.min.js"></script><script src="tus-driver.js"></script>'
)


@pytest.fixture(scope="module")
def tus_min_js() -> bytes:
    """tus-js-client's browser bundle (UMD, the global `tus`), as npm installed it."""
    bundle = TUS_JS_CLIENT / "dist" / "tus.min.js"
    if not bundle.is_file():
        # Not a skip: this test is the one check of the service against a third-party
        # browser client, and .ci/run installs it.
        pytest.fail(
            f"{bundle.relative_to(JS.parent.parent.parent)} is missing: run "
            "`npm ci --prefix tests/e2e/js` (.ci/run does)",
            pytrace=False,
        )
    installed = json.loads((TUS_JS_CLIENT / "package.json").read_text())["version"]
    assert installed == TUS_JS_CLIENT_VERSION, "tests/e2e/js/node_modules is stale: npm ci"
    return bundle.read_bytes()


@dataclass
class Service:
    """The app behind the cutting proxy behind the shipped nginx, over one bucket."""

    bucket: Bucket
    app: AppServer
    proxy: CuttingProxy
    nginx: Nginx


@pytest.fixture
def service(bucket: Bucket, start_app: StartApp, start_nginx: StartNginx) -> Iterator[Service]:
    app = start_app(bucket, part_size=PART_SIZE, env={"UPLOAD_AUTH_TOKENS": TOKEN})
    proxy = CuttingProxy(app.address)
    nginx = start_nginx([proxy.address])
    yield Service(bucket, app, proxy, nginx)
    proxy.stop()


@dataclass
class SentFile:
    data: bytes
    digest: str


@pytest.fixture(scope="module")
def sent_file() -> SentFile:
    data = random.Random(13).randbytes(SIZE)
    return SentFile(data, sha256(data))


class TusPage:
    """The page that runs tus-js-client, on nginx's origin."""

    def __init__(
        self,
        page: Page,
        origin: str,
        tus_min_js: bytes,
        file: SentFile,
        endpoint: str | None = None,
    ) -> None:
        """`endpoint`: where uploads go, if not `origin`'s /files/ (a page on another
        origin)."""
        self.page = page
        self.origin = origin
        self.endpoint = endpoint or f"{origin}/files/"
        self.url = f"{origin}{TEST_PATH}"
        self.files = {
            "": (PAGE, "text/html"),
            "tus.min.js": (tus_min_js, "text/javascript"),
            "tus-driver.js": (DRIVER.read_bytes(), "text/javascript"),
            "data.bin": (file.data, "application/octet-stream"),
        }

    def _answer(self, route: Route) -> None:
        body, content_type = self.files[urlsplit(route.request.url).path[len(TEST_PATH) :]]
        route.fulfill(status=200, body=body, content_type=content_type)

    def load(self, navigate: Callable[[], Any]) -> None:
        """Navigate with Playwright answering the test's URLs, make the File, then let go:
        the uploads reach nginx untouched (no request interception on their way)."""
        pattern = f"{self.url}**"
        self.page.route(pattern, self._answer)
        try:
            navigate()
            size = self.page.evaluate(
                "options => window.loadTestFile(options)",
                {"dataUrl": f"{self.url}data.bin", "name": NAME, "lastModified": LAST_MODIFIED_MS},
            )
            assert size == SIZE
        finally:
            self.page.unroute(pattern, self._answer)

    def open(self) -> None:
        self.load(lambda: self.page.goto(self.url))

    def reload(self) -> None:
        """A reload: the running upload's request is abandoned, localStorage stays."""
        self.load(self.page.reload)

    def start(self, protocol: str, *, chunk_size: int | None = None, resume: bool = False) -> None:
        self.page.evaluate(
            "options => window.startTusUpload(options)",
            {
                "endpoint": self.endpoint,
                "protocol": protocol,
                "token": TOKEN,
                "chunkSize": chunk_size,
                "resume": resume,
            },
        )

    def requests(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate("window.tusRun.requests"))

    def wait_for_request(self, method: str) -> dict[str, Any]:
        """The first request of `method` once tus-js-client has got its answer."""
        self.page.wait_for_function(
            "method => window.tusRun.requests.some(r => r.method === method && r.status)",
            arg=method,
        )
        return next(r for r in self.requests() if r["method"] == method)

    def outcome(self) -> dict[str, Any]:
        """How the upload ended (onSuccess or onError), once it has."""
        self.page.wait_for_function("window.tusRun.outcome !== null", timeout=120_000)
        return dict(self.page.evaluate("window.tusRun.outcome"))

    def stored_upload_urls(self) -> list[str]:
        """The upload URLs tus-js-client keeps in localStorage for resuming."""
        return list(
            self.page.evaluate(
                """Object.keys(localStorage).filter(k => k.startsWith("tus::"))
                    .map(k => JSON.parse(localStorage.getItem(k)).uploadUrl)"""
            )
        )


@pytest.fixture
def tus_page(
    service: Service,
    new_page: Callable[..., Page],
    tus_min_js: bytes,
    sent_file: SentFile,
) -> TusPage:
    return TusPage(new_page(), service.nginx.url, tus_min_js, sent_file)


def show(requests: list[dict[str, Any]]) -> str:
    """The requests tus-js-client made, one a line, for a failing assertion's message."""
    return "\n" + "\n".join(
        f"{r['method']} {r['url']} offset={r['offset']} complete={r['complete']} -> "
        f"{r['status']} offset={r['answerOffset']} {(r['body'] or '')[:160]}"
        for r in requests
    )


def upload_id(origin: str, url: str) -> str:
    match = re.fullmatch(re.escape(origin) + r"/files/([0-9a-f]{32})", url)
    assert match, url
    return match.group(1)


def hold_mid_upload(service: Service, tus_page: TusPage, protocol: str) -> None:
    """Start the upload in one PATCH (tus-js-client's default) and hold it once CUT_AT
    bytes went through and the two whole parts among them are in storage."""
    service.proxy.hold_at(service.proxy.forwarded + CUT_AT)
    tus_page.start(protocol)
    assert service.proxy.held.wait(timeout=60), show(tus_page.requests())
    # The proxy has handed the app CUT_AT bytes, some maybe still in socket buffers, which
    # a reset discards: wait until the app has read and stored the first two parts.
    assert wait_until(lambda: service.bucket.parts_stored() >= 2, timeout=60), service.app.log()


def assert_sent_again_at_most_one_part(resumed_at: int, requests: list[dict[str, Any]]) -> None:
    """The app had CUT_AT bytes (the proxy's count, the requests' headers included) when
    the connection was cut, and kept all but at most one part of them: the upload went on
    from there.

    Not counted: a PATCH that tus-js-client sent while the cut request was still being
    wound up (its HEAD came first and got the offset saved before), refused (see
    RETRIED_REFUSALS): what the browser had sent of it before the refusal is lost too."""
    assert CUT_AT - PART_SIZE <= resumed_at < CUT_AT, show(requests)


def assert_stored(service: Service, protocol: str, url: str, file: SentFile) -> str:
    """The object holds the bytes sent, and the bucket nothing but it and the completed
    upload's state record; HEAD still tells the upload is complete. Its key."""
    bucket = service.bucket
    id_ = upload_id(service.nginx.url, url)
    # S3_KEY_PREFIX (uploads/ by default), then <id>/<safe filename>, as form uploads.
    key = f"uploads/{id_}/{NAME}"
    assert sorted(bucket.keys()) == [f".upload-resumable/{id_}/state.json", key]
    assert bucket.sha256(key) == file.digest
    assert bucket.incomplete_uploads() == []
    # Nothing of any PATCH on nginx's disk.
    assert service.nginx.body_temp_files() == []
    # A client that lost the last answer learns from HEAD that the upload is complete.
    head = httpx.head(
        url, headers={"Authorization": f"Bearer {TOKEN}", **PROTOCOL_HEADERS[protocol]}
    )
    assert head.status_code == HEAD_STATUS[protocol]
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(SIZE)
    return key


def assert_last_patch_completes(
    protocol: str, requests: list[dict[str, Any]], key: str, file: SentFile
) -> None:
    """The last PATCH got the whole length as its offset; in the IETF drafts it said it
    completes the upload and got the stored object in its answer."""
    last = requests[-1]
    assert last["method"] == "PATCH" and last["answerOffset"] == str(SIZE), last
    if protocol == "tus-v1":
        assert last["status"] == 204, last
        return
    assert last["complete"] == "?1", last
    assert last["status"] == 200, last
    stored = json.loads(last["body"])["object"]
    assert (stored["key"], stored["size"], stored["sha256"]) == (key, SIZE, file.digest)


def assert_resumed_by_itself(protocol: str, requests: list[dict[str, Any]]) -> int:
    """After each request that failed, tus-js-client asked HEAD for the offset and sent the
    next PATCH from exactly there; the only refusals were those of RETRIED_REFUSALS. The
    offset of the first PATCH the app took."""
    for before, after in itertools.pairwise(requests):
        if after["method"] == "PATCH" and not str(before["status"]).startswith("2"):
            pytest.fail(f"PATCH without a HEAD after a failure: {before} then {after}")
        if before["method"] == "HEAD" and after["method"] == "PATCH":
            assert before["status"] == HEAD_STATUS[protocol], before
            assert after["offset"] == before["answerOffset"], (before, after)
    patches = [r for r in requests if r["method"] == "PATCH"]
    for refused in itertools.takewhile(lambda r: r["status"] not in (200, 204), patches):
        code = json.loads(refused["body"])["error"]["code"]
        assert (refused["status"], code) in RETRIED_REFUSALS[protocol], refused
    return int(next(r for r in patches if r["status"] in (200, 204))["offset"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tus_js_client_uploads_in_several_patches_intact(
    protocol: str, service: Service, tus_page: TusPage, sent_file: SentFile
) -> None:
    # 7 MiB requests over 5 MiB parts: every request but the last ends inside a part, so
    # the bytes short of a part wait in storage for the next request.
    tus_page.open()
    before = service.proxy.forwarded
    tus_page.start(protocol, chunk_size=7 * MiB)
    outcome = tus_page.outcome()
    assert outcome["state"] == "success", outcome
    requests = tus_page.requests()

    assert [r["method"] for r in requests] == ["POST", "PATCH", "PATCH", "PATCH", "PATCH"]
    assert [r["offset"] for r in requests[1:]] == [str(n * 7 * MiB) for n in range(4)]
    assert requests[0]["status"] == 201
    assert all(r["status"] in (200, 204) for r in requests[1:]), show(requests)
    key = assert_stored(service, protocol, outcome["url"], sent_file)
    assert_last_patch_completes(protocol, requests, key, sent_file)
    # Every byte reached the app once (the rest is the requests' headers).
    assert 0 <= service.proxy.forwarded - before - SIZE < 64 * 1024


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tus_js_client_resumes_by_itself_after_the_connection_is_cut(
    protocol: str, service: Service, tus_page: TusPage, sent_file: SentFile
) -> None:
    # The whole file in one PATCH, reset after CUT_AT bytes.
    tus_page.open()
    hold_mid_upload(service, tus_page, protocol)
    service.proxy.cut()
    outcome = tus_page.outcome()
    assert outcome["state"] == "success", (outcome, show(tus_page.requests()))
    requests = tus_page.requests()

    # One upload: created once, the cut PATCH answered by nginx (502, no app answer), then
    # HEAD and PATCH again on the same URL, from the server's offset.
    assert [r["method"] for r in requests[:2]] == ["POST", "PATCH"], show(requests)
    # nginx's 502 (the app never answered), or no answer if the browser saw the reset.
    assert requests[1]["status"] in (502, None), show(requests)
    assert all(r["url"] == outcome["url"] for r in requests[1:]), show(requests)
    assert requests[2]["method"] == "HEAD", show(requests)
    resumed_at = assert_resumed_by_itself(protocol, requests[2:])
    assert_sent_again_at_most_one_part(resumed_at, requests)
    key = assert_stored(service, protocol, outcome["url"], sent_file)
    assert_last_patch_completes(protocol, requests, key, sent_file)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tus_js_client_continues_after_a_page_reload(
    protocol: str, service: Service, tus_page: TusPage, sent_file: SentFile
) -> None:
    tus_page.open()
    hold_mid_upload(service, tus_page, protocol)
    created = tus_page.wait_for_request("POST")
    assert created["status"] == 201
    first_url = tus_page.page.evaluate("window.tusRun.requests[1].url")
    assert tus_page.stored_upload_urls() == [first_url]

    # The page goes away mid-PATCH; then the connection to the app drops as it would.
    tus_page.reload()
    service.proxy.cut()
    tus_page.start(protocol, resume=True)
    outcome = tus_page.outcome()
    assert outcome["state"] == "success", (outcome, show(tus_page.requests()))
    requests = tus_page.requests()

    # The new page found the unfinished upload and went on with it: no new POST.
    assert tus_page.page.evaluate("window.tusRun.previousUploads") == 1
    assert outcome["url"] == first_url, show(requests)
    assert "POST" not in [r["method"] for r in requests], show(requests)
    assert requests[0]["method"] == "HEAD", show(requests)
    assert all(r["url"] == first_url for r in requests), show(requests)
    resumed_at = assert_resumed_by_itself(protocol, requests)
    assert_sent_again_at_most_one_part(resumed_at, requests)
    key = assert_stored(service, protocol, outcome["url"], sent_file)
    assert_last_patch_completes(protocol, requests, key, sent_file)


@pytest.fixture
def app_origins() -> Iterator[tuple[Capture, Capture]]:
    """Two applications' origins, each a real page on its own loopback port (a page the
    browser did not load from loopback may not call loopback at all: Chromium's local
    network access): one listed in UPLOAD_CORS_ORIGINS, one not."""
    listed, unlisted = Capture(), Capture()
    yield listed, unlisted
    listed.stop()
    unlisted.stop()


def open_on(page: TusPage, app_page: Capture) -> None:
    """Open the application's own page, then bring tus-js-client and the driver into it."""

    def navigate() -> None:
        page.page.goto(app_page.url)
        page.page.add_script_tag(content=page.files["tus.min.js"][0].decode())
        page.page.add_script_tag(content=page.files["tus-driver.js"][0].decode())

    page.load(navigate)


@pytest.mark.parametrize("protocol", ["tus-v1", "ietf-draft-05"])
def test_tus_js_client_uploads_from_a_page_on_another_listed_origin(
    protocol: str,
    bucket: Bucket,
    start_app: StartApp,
    start_nginx: StartNginx,
    new_page: Callable[..., Page],
    tus_min_js: bytes,
    sent_file: SentFile,
    app_origins: tuple[Capture, Capture],
) -> None:
    """The page is on an application's origin, the service on another (issue 14's CORS):
    tus-js-client's preflights, its custom headers and the headers it reads (Location,
    Upload-Offset, Upload-Length) all pass the browser for a listed origin; a page on an
    origin that is not listed is stopped by the browser before anything is created."""
    listed, unlisted = app_origins
    listed_origin = listed.url.rstrip("/")
    env = {"UPLOAD_AUTH_TOKENS": TOKEN, "UPLOAD_CORS_ORIGINS": listed_origin}
    app = start_app(bucket, part_size=PART_SIZE, env=env)
    nginx = start_nginx([app.address], cors_origins=listed_origin)
    endpoint = f"{nginx.url}/files/"

    page = TusPage(new_page(), listed_origin, tus_min_js, sent_file, endpoint=endpoint)
    open_on(page, listed)
    page.start(protocol, chunk_size=7 * MiB)
    outcome = page.outcome()
    assert outcome["state"] == "success", (outcome, show(page.requests()))
    id_ = upload_id(nginx.url, outcome["url"])
    key = f"uploads/{id_}/{NAME}"
    assert bucket.sha256(key) == sent_file.digest
    assert bucket.incomplete_uploads() == []

    refused = TusPage(
        new_page(), unlisted.url.rstrip("/"), tus_min_js, sent_file, endpoint=endpoint
    )
    open_on(refused, unlisted)
    refused.start(protocol)
    assert refused.outcome()["state"] == "error"
    # Each creation (tus-js-client retries network errors) got no answer the page could read.
    attempts = refused.requests()
    assert attempts and all((r["method"], r["status"]) == ("POST", None) for r in attempts)
    assert sorted(bucket.keys()) == [f".upload-resumable/{id_}/state.json", key]
