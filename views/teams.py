"""(being built)"""

from __future__ import annotations

from typing import Any


def register(appbuilder: Any) -> None:
    """Add this module's screens (called by ``views.register_views``)."""
