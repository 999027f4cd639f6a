"""The gateway examples speak the authorization endpoint's headers (DESIGN §14).

nginx's is run for real in test_gateway_nginx.py; Envoy's cannot be here (no Envoy
package), so it is read: it asks /v1/authz with the headers the endpoint reads, and
adds the gateway's own (token, id, region, record) over any a client sends.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from carveout_enforcement.decision.authz_request import FIELDS, PROXY_REQUEST_ID, RECORD, TOKEN

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
READ = {name.decode() for name in (*FIELDS, RECORD, TOKEN, PROXY_REQUEST_ID)} | {
    "x-carveout-safeguards",
    "x-carveout-units",
}
GATEWAYS_OWN = {
    "x-carveout-gateway-token",
    "x-carveout-gateway",
    "x-carveout-region",
    "x-carveout-record",
}


def ext_authz(config: dict[str, Any]) -> dict[str, Any]:
    [listener] = config["static_resources"]["listeners"]
    [manager] = listener["filter_chains"][0]["filters"]
    filters = manager["typed_config"]["http_filters"]
    [found] = [f["typed_config"] for f in filters if f["name"] == "envoy.filters.http.ext_authz"]
    assert filters[-1]["name"] == "envoy.filters.http.router"  # the check comes before routing
    return found


def test_envoy_asks_the_authorization_endpoint_with_its_headers() -> None:
    config = yaml.safe_load((EXAMPLES / "envoy" / "envoy.yaml").read_text())
    authz = ext_authz(config)
    assert authz["failure_mode_allow"] is False
    service = authz["http_service"]
    assert service["path_prefix"] == "/v1/authz"
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert service["server_uri"]["cluster"] in clusters
    added = {h["key"] for h in service["authorization_request"]["headers_to_add"]}
    assert added == GATEWAYS_OWN
    assert added <= READ
    patterns = authz["allowed_headers"]["patterns"]
    assert {"prefix": "x-carveout-"} in patterns
    assert {"exact": "x-request-id"} in patterns


def test_nginx_sets_only_headers_the_endpoint_reads() -> None:
    site = (EXAMPLES / "nginx" / "carveout.conf").read_text()
    subrequest = site.split("location = /_carveout/authz", 1)[1].split("location @", 1)[0]
    set_headers = set(re.findall(r"proxy_set_header (x-carveout-[a-z-]+)", subrequest))
    assert set_headers >= GATEWAYS_OWN
    assert set_headers <= READ
    assert "proxy_pass http://carveout_enforcement/v1/authz$request_uri;" in subrequest
    assert 'proxy_set_header Authorization "";' in subrequest  # the client's stays in nginx
