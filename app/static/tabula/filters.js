// The list search widget (replaces FAB's ab_filters.js, which inserted field labels into the page as HTML:
// a field labelled <script>...</script> ran when its filter row was built). Same constructor and markup as
// FAB's AdminFilters; every label and operator name is set as text. The field inputs come from our own
// form widgets, which escape their option labels and values on the server.
var AdminFilters = function (element, labels, form, filters, activeFilters) {
  "use strict";
  var $root = $(element);
  var $container = $(".filters", $root);

  function removeFilter(event) {
    event.preventDefault();
    $(this).closest("tr").remove();
    $("button", $root).show();
  }

  function addRemoveFilter($row, label) {
    var $link = $('<a href="#" class="btn remove-filter"/>')
      .append($('<span class="close-icon" aria-hidden="true"/>').text("\u00d7"))
      .append(document.createTextNode("\u00a0" + String(label == null ? "" : label)))
      .on("click", removeFilter);
    $row.append($("<td/>").append($link));
  }

  function addOperators($row, name, chosen, withSelect2) {
    var $select = $('<select class="filter-op my_select2"/>');
    var index = -1;
    $.each(filters[name] || [], function (position, operator) {
      var $option = $("<option/>").attr("value", position).text(operator);
      if (chosen === operator) {
        $option.attr("selected", "selected");
        index = position;
      }
      $select.append($option);
    });
    $row.append($('<td class="filter"/>').append($select));
    $select.on("select2:select change", function () {
      $row.find(".filter_val").attr("name", "_flt_" + $select.val() + "_" + name);
    });
    if (withSelect2 && $.fn.select2) {
      $select.select2({theme: "bootstrap"});
    }
    return index;
  }

  // The field's input: FAB hands it over as server-rendered HTML (escaped by our widgets); parse it without
  // running scripts, and name it after the chosen operator.
  function fieldInput(name, operatorIndex, value) {
    var inert = document.implementation.createHTMLDocument("");
    var $field = $($.parseHTML(String(form[name] || ""), inert, false));
    var $input = $field.is("input, select, textarea") ? $field : $("input, select, textarea", $field).first();
    $input.attr("name", "_flt_" + operatorIndex + "_" + name);
    $input.addClass("filter_val");
    if (value !== undefined) {
      if ($input.attr("type") === "checkbox") {
        $input.prop("checked", true);
      }
      if ($input.is("select.tabula-link") && !$input.find("option").filter(function () {
        return this.value === String(value);
      }).length) {
        // A link filter from the URL: the chosen record is not among the options yet; its label follows.
        $input.append($("<option/>").attr("value", value).text("#" + value));
        labelLink($input, String(value));
      }
      $input.val(value);
    }
    return {$field: $field, $input: $input};
  }

  function labelLink($input, id) {
    $.getJSON($input.data("lookup"), {q: id}).done(function (data) {
      $.each(data.results || [], function (_, hit) {
        if (String(hit.id) === id) {
          $input.find("option").filter(function () { return this.value === id; }).text(hit.text);
          $input.trigger("change.select2");
        }
      });
    });
  }

  function enhance($input) {
    if ($input.is("select.tabula-link") && window.TabulaFields) {
      window.TabulaFields.link($input);
    } else if ($input.is("select")) {
      window.TabulaFields ? window.TabulaFields.choice($input) : $input.select2({theme: "bootstrap"});
    }
  }

  function addRow(name, operator, value, fromUrl) {
    if (!Object.prototype.hasOwnProperty.call(labels, name)) { return; }
    var $row = $("<tr/>").appendTo($container);
    addRemoveFilter($row, labels[name]);
    var index = addOperators($row, name, operator, !fromUrl);
    var built = fieldInput(name, index < 0 ? 0 : index, value);
    $row.append($('<td class="filter"/>').append(built.$field));
    // select2 loads after this widget's inline start-up: enhance once the page is ready.
    $(function () {
      enhance(built.$input);
      if (fromUrl) { $row.find("select.filter-op").select2({theme: "bootstrap"}); }
    });
  }

  $("a.filter", $root).on("click", function (event) {
    event.preventDefault();
    addRow($(this).attr("name"));
  });

  $.each(activeFilters || [], function (_, active) {
    var values = Array.isArray(active[2]) ? active[2] : [active[2]];
    $.each(values, function (__, value) { addRow(active[0], active[1], value, true); });
  });
};
