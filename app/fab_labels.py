"""Flask-AppBuilder's own labels that its Russian catalog lacks (its user groups screen came later than the
catalog). Listed here only so that ``pybabel extract`` puts them in Tabula's catalog, which Flask-Babel
merges with FAB's: the menu and the screen titles then show in Russian too."""

from __future__ import annotations


def N_(text: str) -> str:  # noqa: N802
    """Marks a string for extraction; translated where FAB shows it."""
    return text


FAB_LABELS = (
    N_("List Groups"),
    N_("Show Group"),
    N_("Add Group"),
    N_("Edit Group"),
    N_("User(s) exists in the group, cannot delete"),
)
