"""The one extension mechanism: named hooks (pluggy, as Datasette's ``hookspecs.py``).

A module that extends Tabula writes functions named after the specs below, marks them with ``@hookimpl``
and registers itself once with ``register(module)``; the code that owns the moment calls ``call.<name>``.
Every hook is called for every table: an implementation about one table checks the table itself. The
specs are the contract; a misspelt implementation is refused when it is registered.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pluggy

PROJECT = "tabula"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Specs:
    """What can be extended, and when each hook runs."""

    @hookspec
    def schema_rebuilt(self, schema: Any) -> None:
        """In every process, after it built the mappings of a new schema version (``runtime.RuntimeSchema``)
        and before it uses them: build what depends on them (screens, APIs)."""

    @hookspec
    def field_purged(self, field_id: int, name: str, slug: str) -> None:
        """After a field's column is gone for good, so nothing (saved views, filters, templates) keeps
        naming it."""

    @hookspec
    def derive(self, ctx: Any, rows: list[dict[str, Any]], befores: list[dict[str, Any] | None]) -> Any:
        """Inside a write's transaction, before it is stored: fill derived fields of complete records of
        ``ctx.entity`` (new values over stored ones; ``befores`` the stored ones, None when created) in
        place. Returns refusals by row index (``{index: {field: message}}``) or None."""

    @hookspec
    def derived_tables(self) -> Any:
        """The table slugs whose writes this plugin's ``derive`` or ``after_write`` act on: the write path
        locks their rows while it reads them (others skip the lock in a big batch)."""

    @hookspec
    def after_write(self, ctx: Any, touched: list[dict[str, Any]]) -> None:
        """Inside a write's transaction, after it: update what depends on the touched records (before and
        after values) elsewhere, through ``records.cascade_update``."""

    @hookspec
    def record_actions(self, entity: Any, rights: Any, record_id: int) -> list[Any] | None:
        """Actions to offer on a record's page (``views.related.RecordAction``), for the reader's
        ``rights``."""


manager = pluggy.PluginManager(PROJECT)
manager.add_hookspecs(Specs)
call = manager.hook


def register(plugin: Any) -> None:
    """Add a module's (or object's) hook implementations; registering twice is a no-op."""
    if not manager.is_registered(plugin):
        manager.register(plugin)
        manager.check_pending()


@contextmanager
def registered(plugin: Any) -> Iterator[Any]:
    """A plugin for the duration of a block (tests, one-off extensions)."""
    register(plugin)
    try:
        yield plugin
    finally:
        manager.unregister(plugin)
