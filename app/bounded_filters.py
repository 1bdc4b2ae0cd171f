"""FAB reads a list filter from ``_flt_<index>_<column>`` and takes the column's ``index``-th operator
without checking it exists (``_flt_7_name`` raised IndexError: a 500). Every data interface of this product
(generated tables, background jobs, FAB's security screens: ``TabulaSecurityManager``) hands out these
filters instead, which refuse an unknown operator with a 400."""

from __future__ import annotations

from typing import Any

from flask import abort
from flask_appbuilder.models.filters import Filters
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_babel import gettext as _


class BoundedFilters(Filters):
    def add_filter_index(self, column_name: str, filter_instance_index: int, value: Any) -> None:
        operators = self._all_filters.get(column_name)
        if operators is not None and not 0 <= filter_instance_index < len(operators):
            abort(400, description=_("The list has no such filter on %(column)s.", column=column_name))
        super().add_filter_index(column_name, filter_instance_index, value)


class BoundedInterface(SQLAInterface):
    def get_filters(self, search_columns: Any = None, search_filters: Any = None) -> Filters:
        return BoundedFilters(
            self.filter_converter_class,
            self,
            search_columns=search_columns or [],
            search_filters=search_filters,
        )
