"""WTForms fields for the registry's types: the form shows a value as a person types it, and hands the
stored value (parsed by the type) to the model. Types pick their widget here; nothing else builds them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request
from flask_appbuilder.fieldwidgets import (
    BS3TextAreaFieldWidget,
    BS3TextFieldWidget,
    Select2Widget,
)
from flask_babel import gettext as _
from flask_babel.speaklater import LazyString
from markupsafe import Markup, escape
from wtforms import Field, ValidationError
from wtforms.utils import unset_value
from wtforms.validators import StopValidation
from wtforms.widgets import html_params

from custom_fields.spec import FieldSpec
from custom_fields.types import FieldType, FieldValueError


def tag(element: str, content: Any = None, /, **attrs: Any) -> Markup:
    """An HTML element; ``html_params`` escapes every attribute, ``content`` is escaped unless Markup."""
    opening = Markup(f"<{element} ") + Markup(html_params(**attrs)) + Markup(">")  # noqa: S704
    if content is None:
        return opening
    return opening + content + Markup(f"</{element}>")  # noqa: S704


class RegistryField(Field):
    """A form field whose value is parsed and shown by its field type."""

    def __init__(self, *args: Any, ftype: FieldType, spec: FieldSpec, search: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.ftype = ftype
        self.spec = spec
        self.search = search
        self.raw = None

    def _value(self) -> str:
        if self.raw is not None:
            return self.raw
        return self.display_text(self.data)

    def display_text(self, value: Any) -> str:
        return self.ftype.to_text(value, self.spec)

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist:
            return
        self.raw = valuelist[0]
        if self.search:
            self.data = self.raw
            return
        try:
            self.data = self.ftype.parse(self.raw, self.spec)
        except FieldValueError as exc:
            self.data = None
            raise ValueError(str(exc)) from None


STORED_SUFFIX = "__stored"


class KeepsStoredValue(RegistryField):
    """A field whose widget cannot show every stored value exactly (seconds and their fractions, a yes/no
    left unanswered): the edit form carries the stored value beside the input, and when what comes back
    is that value as the widget showed it, the stored value is kept, so an untouched save changes
    nothing. The carried value only ever adds what the widget could not show."""

    stored: Any = None

    def process(self, formdata: Any, data: Any = unset_value, extra_filters: Any = None) -> None:
        super().process(formdata, data, extra_filters)
        if not formdata:
            self.stored = self.data
            return
        carried = formdata.get(self.name + STORED_SUFFIX)
        if carried is None or self.search or self.process_errors:
            return
        try:
            self.stored = self.ftype.parse(carried, self.spec)
        except FieldValueError:
            return
        if self.shows_as_stored(self.data, self.stored):
            self.data = self.stored

    def shows_as_stored(self, value: Any, stored: Any) -> bool:
        raise NotImplementedError

    def stored_input(self) -> Markup:
        if self.search or not (request.view_args or {}).get("pk"):
            return Markup("")  # only an edit form has a stored value
        # A value set from the record (the page opened, or a conflict took the saved value) is the stored
        # one; after a POST the form keeps carrying what was stored when it was opened.
        text = self.ftype.to_text(self.data if self.raw is None else self.stored, self.spec)
        return tag("input", type="hidden", name=self.name + STORED_SUFFIX, value=text)


class DateInput:
    input_type = "date"

    def __call__(self, field: RegistryField, **kwargs: Any) -> Markup:
        kwargs.setdefault("id", field.id)
        kwargs.setdefault("class", "form-control")
        return tag("input", name=field.name, type=self.input_type, value=field._value(), **kwargs)


class DateTimeInput(DateInput):
    input_type = "datetime-local"

    def __call__(self, field: RegistryField, **kwargs: Any) -> Markup:
        kwargs.setdefault("step", "1")  # seconds are shown and kept
        companion = field.stored_input() if isinstance(field, KeepsStoredValue) else Markup("")
        return super().__call__(field, **kwargs) + companion


class DateTimeField(KeepsStoredValue):
    def display_text(self, value: Any) -> str:
        from custom_fields.types import local_timezone

        if value is None:
            return ""
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        # (isoformat, not strftime: strftime writes the year 1 as "1", which the input cannot read)
        local = aware.astimezone(local_timezone()).replace(tzinfo=None, microsecond=0)
        return local.isoformat(timespec="seconds")

    def shows_as_stored(self, value: Any, stored: Any) -> bool:
        # The browser sends back what it showed: to the second, or to the minute when seconds are zero.
        if value is None or stored is None:
            return False
        return value in (stored.replace(microsecond=0), stored.replace(second=0, microsecond=0))


class BooleanChoiceField(KeepsStoredValue):
    """A checkbox; in search forms a yes/no choice. An unticked box on a value never answered (empty)
    keeps it empty."""

    def shows_as_stored(self, value: Any, stored: Any) -> bool:
        return stored is None and value is False

    def process_formdata(self, valuelist: list[str]) -> None:
        if self.search:
            super().process_formdata(valuelist)
            return
        self.raw = valuelist[0] if valuelist else ""
        self.data = bool(valuelist and valuelist[0] not in ("", "n", "false", "0"))

    def process_data(self, value: Any) -> None:
        self.data = value


class CheckboxInput:
    def __call__(self, field: BooleanChoiceField, **kwargs: Any) -> Markup:
        kwargs.setdefault("id", field.id)
        checked = {"checked": True} if field.data else {}
        box = tag("input", name=field.name, type="checkbox", value="y", **checked, **kwargs)
        return box + field.stored_input()


class ChoiceWidget(Select2Widget):
    def __call__(self, field: SelectField, **kwargs: Any) -> Markup:
        kwargs.setdefault("id", field.id)
        kwargs.setdefault("class", "tabula-select form-control")
        multiple = {"multiple": True} if field.multiple else {}
        options = [] if field.multiple else [Markup('<option value=""></option>')]
        chosen = field.chosen_ids()
        for option in field.spec.options:
            selected = {"selected": True} if option["id"] in chosen else {}
            options.append(tag("option", option["label"], value=option["id"], **selected))
        return tag("select", Markup("").join(options), name=field.name, **multiple, **kwargs)


class SelectField(RegistryField):
    multiple = False

    def chosen_ids(self) -> set[str]:
        if self.raw is not None and self.search:
            return {self.raw}
        if self.multiple:
            return set(self.ftype.ids(self.data))
        return {self.data} if self.data else set()

    def process_formdata(self, valuelist: list[str]) -> None:
        if not self.multiple:
            super().process_formdata(valuelist)
            return
        self.raw = ",".join(valuelist)
        try:
            self.data = self.ftype.parse([v for v in valuelist if v], self.spec)
        except FieldValueError as exc:
            self.data = None
            raise ValueError(str(exc)) from None


class MultiSelectField(SelectField):
    multiple = True


class LinkWidget:
    """A select with search-as-you-type (select2 + the table's lookup endpoint)."""

    def __call__(self, field: LinkField, **kwargs: Any) -> Markup:
        kwargs.setdefault("id", field.id)
        value = field.data
        label = field.current_label()
        option = (
            tag("option", label, value=value, selected=True)
            if value not in (None, "")
            else Markup('<option value=""></option>')
        )
        return tag(
            "select",
            option,
            name=field.name,
            class_="form-control tabula-link",
            data_lookup=field.lookup_url(),
            data_placeholder=_("Type to search…"),
            **kwargs,
        )


class LinkField(RegistryField):
    def lookup_url(self) -> str:
        from custom_fields.runtime import lookup_url

        return lookup_url(self.ftype, self.spec)

    def current_label(self) -> str:
        """The label shown next to the value (``#id`` for a record the reader may not read)."""
        from custom_fields.runtime import record_label, user_label

        if self.data in (None, ""):
            return ""
        try:
            value = int(self.data)
        except (TypeError, ValueError):
            return str(self.data)
        if self.ftype.reference == "user":
            return user_label(value)
        return record_label(int(self.spec.settings["target"]), value)


def _validators(ftype: FieldType, spec: FieldSpec, search: bool) -> list[Any]:
    if search:
        return []
    validators: list[Any] = []
    if spec.required:
        validators.append(required)
    if ftype.reference is not None:
        validators.append(link_exists)
    return validators


def required(form: Any, field: RegistryField) -> None:
    if field.data is None or field.data == "":
        if field.raw not in (None, "") and field.errors:
            raise StopValidation()  # something was typed: its own message ("Expected a number") says why
        field.errors[:] = []
        raise ValidationError(_("This field is required."))


def link_exists(form: Any, field: RegistryField) -> None:
    try:
        field.ftype.check_exists(field.data, field.spec)
    except FieldValueError as exc:
        raise ValidationError(str(exc)) from None


class _EscapedLazy(LazyString):
    """Text made when shown, escaped in HTML like any user text (flask-babel's LazyString would mark it
    safe as it is)."""

    def __html__(self) -> Markup:
        return escape(str(self))


def converting_note(spec: FieldSpec) -> str:
    """What the screens say about a field a background job is converting ("" when none)."""
    from custom_fields.types import REGISTRY

    target = REGISTRY.get(spec.converting_to) if spec.converting_to else None
    if target is None:
        return ""
    return _(
        "Being converted to “%(type)s”: a new value that cannot be converted is refused until it finishes.",
        type=str(target.label),
    )


def _described(ftype: FieldType, spec: FieldSpec) -> Any:
    """The form's help under the field: its help text, and whether it is converting (in the reader's
    language when shown: forms are built once for every user)."""
    if not spec.converting_to:
        return spec.help_text
    return _EscapedLazy(lambda: " ".join(t for t in (str(spec.help_text or ""), converting_note(spec)) if t))


def _make(cls: type[RegistryField], widget: Any, ftype: FieldType, spec: FieldSpec, search: bool) -> Any:
    from custom_fields.runtime import column_default

    return cls(
        spec.label,
        default=None if search else column_default(spec),
        validators=_validators(ftype, spec, search),
        description=_described(ftype, spec),
        widget=widget,
        ftype=ftype,
        spec=spec,
        search=search,
    )


def text_field(ftype: FieldType, spec: FieldSpec, *, search: bool = False) -> Any:
    return _make(RegistryField, BS3TextFieldWidget(), ftype, spec, search)


def long_text_field(ftype: FieldType, spec: FieldSpec, *, search: bool = False) -> Any:
    widget = BS3TextFieldWidget() if search else BS3TextAreaFieldWidget()
    return _make(RegistryField, widget, ftype, spec, search)


def number_field(ftype: FieldType, spec: FieldSpec, *, search: bool = False) -> Any:
    return _make(RegistryField, BS3TextFieldWidget(), ftype, spec, search)


def boolean_field(ftype: FieldType, spec: FieldSpec, *, search: bool = False) -> Any:
    if search:
        return _make(RegistryField, BS3TextFieldWidget(), ftype, spec, search)
    return _make(BooleanChoiceField, CheckboxInput(), ftype, spec, search)


def date_field(ftype: FieldType, spec: FieldSpec, *, search: bool = False) -> Any:
    return _make(RegistryField, DateInput(), ftype, spec, search)


def datetime_field(ftype: FieldType, spec: FieldSpec, *, search: bool = False) -> Any:
    return _make(DateTimeField, DateTimeInput(), ftype, spec, search)


def select_field(ftype: FieldType, spec: FieldSpec, *, search: bool = False) -> Any:
    return _make(SelectField, ChoiceWidget(), ftype, spec, search)


def multi_select_field(ftype: FieldType, spec: FieldSpec, *, search: bool = False) -> Any:
    if search:
        return _make(SelectField, ChoiceWidget(), ftype, spec, search)
    return _make(MultiSelectField, ChoiceWidget(), ftype, spec, search)


def link_field(ftype: FieldType, spec: FieldSpec, *, search: bool = False) -> Any:
    return _make(LinkField, LinkWidget(), ftype, spec, search)
