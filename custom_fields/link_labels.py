"""Link cells given as the linked record's label (a company's name pasted into the grid's Company column,
or imported from a file) become that record's id, found through the query layer within the actor's reach.
One place for the rule, so the grid and the import agree: a number (``12`` or ``#12``) stays a record
number; a label exactly one readable record has is that record; a label none or several have is refused
with a message for that cell only."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask_babel import gettext as _

from custom_fields import runtime
from custom_fields.access import Actor
from custom_fields.query import QueryError, TableQuery
from custom_fields.spec import FieldSpec
from custom_fields.types import REGISTRY


class LinkLabels:
    """Resolves labels for one actor, each (field, label) once however many cells repeat it."""

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self._found: dict[tuple[int, str], tuple[bool, Any]] = {}

    @staticmethod
    def applies(spec: FieldSpec, raw: Any) -> bool:
        """Whether ``raw`` is a label for a link to records (not a record number, not another kind)."""
        if REGISTRY[spec.type].reference != "record" or not isinstance(raw, str):
            return False
        text = raw.strip()
        return bool(text) and not text.isdecimal() and not (text.startswith("#") and text[1:].isdecimal())

    def resolve(self, spec: FieldSpec, raw: Any) -> tuple[bool, Any] | None:
        """``(True, record id)``, ``(False, message)``, or None when ``raw`` is no label (a number: the
        field's own parsing takes it; ``#12`` comes back as ``"12"``)."""
        if isinstance(raw, str) and raw.strip().startswith("#") and raw.strip()[1:].isdecimal():
            return (True, raw.strip()[1:]) if REGISTRY[spec.type].reference == "record" else None
        if not self.applies(spec, raw):
            return None
        text = raw.strip()
        key = (spec.id, text)
        if key not in self._found:
            self._found[key] = self._look_up(spec, text)
        return self._found[key]

    def prefetch(self, cells: Iterable[tuple[FieldSpec, Any]]) -> None:
        """Look up every label among ``cells`` (field, raw value) at once: one query per field and chunk of
        labels, not one per label (an import naming 5,000 companies)."""
        texts: dict[int, tuple[FieldSpec, set[str]]] = {}
        for spec, raw in cells:
            if self.applies(spec, raw) and (spec.id, raw.strip()) not in self._found:
                texts.setdefault(spec.id, (spec, set()))[1].add(raw.strip())
        for spec, labels in texts.values():
            target = self._target(spec)
            try:
                found = TableQuery(target.slug, self.actor).ids_labelled_many(labels) if target else {}
            except QueryError:
                found = {}
            for text in labels:
                self._found[(spec.id, text)] = self._answer(text, found.get(text, []))

    @staticmethod
    def _target(spec: FieldSpec) -> Any:
        return runtime.current().by_id.get(REGISTRY[spec.type].target_entity_id(spec) or 0)

    def _look_up(self, spec: FieldSpec, text: str) -> tuple[bool, Any]:
        target = self._target(spec)
        try:
            ids = TableQuery(target.slug, self.actor).ids_labelled(text) if target else []
        except QueryError:
            ids = []
        return self._answer(text, ids)

    @staticmethod
    def _answer(text: str, ids: list[int]) -> tuple[bool, Any]:
        if len(ids) == 1:
            return True, ids[0]
        if ids:
            return False, _(
                "Several records are called “%(label)s”: give its number instead.", label=text[:60]
            )
        return False, _("No record “%(label)s” that you may see.", label=text[:60])
