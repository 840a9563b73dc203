"""Operator endpoints through the shipped nginx config: /metrics only for the addresses it
lists (loopback and private ranges by default), /healthz and /readyz for everyone."""

from __future__ import annotations

import httpx
import pytest

from harness.nginx import Nginx
from harness.store import Bucket, MiB
from tests.e2e.conftest import StartApp, StartNginx


class MetricsForOthersNginx(Nginx):
    """The shipped config with loopback taken off the /metrics list: the tests' client
    (127.0.0.1) is then an address the operator did not list."""

    def render(self) -> None:
        super().render()
        conf = self.prefix / "upload.conf"
        text = conf.read_text()
        loopback = "    127.0.0.0/8 1;\n"
        assert text.count(loopback) == 1, "the template's /metrics list changed"
        conf.write_text(text.replace(loopback, ""))


@pytest.mark.parametrize(
    ("server_class", "listed"), [(Nginx, True), (MetricsForOthersNginx, False)]
)
def test_metrics_only_for_listed_addresses_health_for_all(
    bucket: Bucket,
    start_app: StartApp,
    start_nginx: StartNginx,
    server_class: type[Nginx],
    listed: bool,
) -> None:
    app = start_app(bucket, part_size=5 * MiB)
    nginx = start_nginx([app.address], server_class=server_class)
    metrics = httpx.get(f"{nginx.url}/metrics", timeout=30)
    if listed:
        assert metrics.status_code == 200
        assert "upload_requests_in_flight" in metrics.text
    else:
        assert metrics.status_code == 403
        assert metrics.json()["error"]["code"] == "forbidden"
    for path in ("/healthz", "/readyz"):
        assert httpx.get(f"{nginx.url}{path}", timeout=30).status_code == 200
