"""Front-end libraries installed from the npm registry (``package.json``, ``npm ci``) served as static files.

Only the files named here are served, under ``/vendor/<name>``, straight from ``node_modules`` (no copy, no
build step). An address not in the list is a 404, whatever it holds (no path reaches past the list).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from flask import Flask, abort, current_app, send_file, url_for

ROOT = Path(__file__).resolve().parent.parent

#: Address under /vendor/ -> file under node_modules.
VENDOR_FILES = {
    "tabulator/tabulator.min.js": "tabulator-tables/dist/js/tabulator.min.js",
    "tabulator/tabulator_bootstrap3.min.css": "tabulator-tables/dist/css/tabulator_bootstrap3.min.css",
    "echarts/echarts.min.js": "echarts/dist/echarts.min.js",
    "echarts/langRU.js": "echarts/i18n/langRU.js",
}
#: A day; a new lockfile changes the addresses (``vendor_url``), so browsers never keep an old library.
MAX_AGE = 86_400


def node_modules() -> Path:
    return Path(current_app.config.get("TABULA_NODE_MODULES") or ROOT / "node_modules")


def vendor_file(name: str) -> Path | None:
    """The installed file served as ``/vendor/<name>``, or None when it is not one of ours or missing."""
    relative = VENDOR_FILES.get(name)
    if relative is None:
        return None
    path = node_modules() / relative
    return path if path.is_file() else None


@functools.cache
def _lock_digest() -> str:
    lock = ROOT / "package-lock.json"
    return hashlib.sha256(lock.read_bytes()).hexdigest()[:12] if lock.is_file() else "0"


def vendor_url(name: str) -> str:
    """The address of a served library file, changing whenever package-lock.json does (``{{ vendor_url(
    "tabulator/tabulator.min.js") }}`` in templates)."""
    if name not in VENDOR_FILES:
        raise KeyError(name)
    return url_for("vendor", name=name, v=_lock_digest())


def serve(name: str) -> object:
    path = vendor_file(name)
    if path is None:
        abort(404)
    return send_file(path, max_age=MAX_AGE, conditional=True)


def register(app: Flask) -> None:
    app.add_url_rule("/vendor/<path:name>", "vendor", serve)
    app.jinja_env.globals["vendor_url"] = vendor_url
