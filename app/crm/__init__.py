"""The CRM's own behaviour on top of the generic engine: computed fields (``derive``), and later lead
conversion, duplicates and merging, global search and the deal board's moves."""

from __future__ import annotations


def register() -> None:
    """Hook the CRM's rules into the write path (idempotent)."""
    from app.crm import derive

    derive.register()
