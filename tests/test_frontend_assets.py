"""Front-end libraries come from the npm registry (package.json + package-lock.json, npm ci) and are served
by the app from node_modules, only the files it names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_lockfile_pins_every_package_without_registry_urls() -> None:
    assert "omit-lockfile-registry-resolved=true" in (ROOT / ".npmrc").read_text().splitlines()
    lock = json.loads((ROOT / "package-lock.json").read_text())
    packages = {k: v for k, v in lock["packages"].items() if k}
    assert packages["node_modules/tabulator-tables"]["version"].startswith("6.")
    assert packages["node_modules/echarts"]["version"].startswith("6.")
    for name, package in packages.items():
        assert "resolved" not in package, name
        assert package["integrity"].startswith("sha512-"), name
    assert "registry.npmjs.org" not in (ROOT / "package-lock.json").read_text()


def test_installed_libraries_are_served_with_a_versioned_address(app, client) -> None:  # noqa: ANN001
    from views.assets import VENDOR_FILES, vendor_url

    with app.test_request_context():
        address = vendor_url("tabulator/tabulator.min.js")
        with pytest.raises(KeyError):
            vendor_url("tabulator/tabulator.js")
    assert address.startswith("/vendor/tabulator/tabulator.min.js?v=")
    response = client.get(address)
    assert response.status_code == 200
    assert "javascript" in response.content_type
    assert b"Tabulator" in response.data[:20_000]
    assert response.cache_control.max_age == 86_400
    for name in VENDOR_FILES:
        assert client.get(f"/vendor/{name}").status_code == 200, name


@pytest.mark.parametrize(
    "address",
    [
        "/vendor/tabulator/tabulator.js",  # installed, but not one of the files we serve
        "/vendor/../package.json",
        "/vendor/tabulator-tables/package.json",
        "/vendor/%2e%2e/%2e%2e/config.py",
        "/vendor/",
    ],
)
def test_nothing_else_is_served_from_node_modules(client, address: str) -> None:  # noqa: ANN001
    assert client.get(address).status_code == 404
