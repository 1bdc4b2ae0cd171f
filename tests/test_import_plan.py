"""Duplicates inside an imported file, found by ``import_rows.plan`` without a key field: a row repeating an
earlier one field for field is refused with that row's number, whatever its values' types (numbers, dates,
multiple choices held as lists); rows differing in one value are both created."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from exports.import_rows import Row, plan


def planned(*values: dict[str, Any]) -> list[Row]:
    rows = [Row(number, [], values=dict(v)) for number, v in enumerate(values, start=2)]
    plan(rows, query=None, match=None, mode="create")  # type: ignore[arg-type] (no key: no query)
    return rows


def test_a_row_repeating_an_earlier_one_is_refused_with_its_number(app_ctx) -> None:  # noqa: ANN001
    first = {"name": "ООО «Ромашка»", "amount": Decimal("10.50"), "since": dt.date(2024, 3, 1)}
    rows = planned(first, {**first, "amount": Decimal("10.51")}, first, first)
    assert [r.action for r in rows] == ["create", "create", "refuse", "refuse"]
    assert rows[2].errors == {"": "Repeats row 2 of the file."}
    assert rows[3].errors == {"": "Repeats row 2 of the file."}  # the first, not the latest repeat


def test_rows_holding_lists_are_compared_by_their_values(app_ctx) -> None:  # noqa: ANN001
    tags = {"name": "Иванов", "tags": ["a1b2c3d4", "e5f6a7b8"]}
    rows = planned(
        tags,
        {"name": "Иванов", "tags": ["a1b2c3d4"]},
        {"name": "Иванов", "tags": ["a1b2c3d4", "e5f6a7b8"]},
        {"name": "Петров"},
        {"name": "Петров"},
    )
    assert [r.action for r in rows] == ["create", "create", "refuse", "create", "refuse"]
    assert rows[2].errors[""] == "Repeats row 2 of the file."
    assert rows[4].errors[""] == "Repeats row 5 of the file."


def test_a_blank_row_is_skipped_not_counted_as_a_repeat(app_ctx) -> None:  # noqa: ANN001
    rows = [Row(2, [], values={"name": "Иванов"}), Row(3, [], action="skip"), Row(4, [], action="skip")]
    plan(rows, query=None, match=None, mode="create")  # type: ignore[arg-type]
    assert [r.action for r in rows] == ["create", "skip", "skip"]
    assert not rows[1].errors and not rows[2].errors
