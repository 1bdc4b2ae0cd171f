// Form fields. Link and user fields: a select with search-as-you-type over the target table's lookup
// endpoint (which answers only with records the user may read); the current value is the preselected option.
// Select fields: their options with search, an empty choice for single selects.
(function ($) {
  "use strict";

  function link(elem) {
    if (elem.data("select2")) { return; }
    elem.select2({
      theme: "bootstrap",
      allowClear: true,
      width: "100%",
      placeholder: elem.data("placeholder") || "",
      minimumInputLength: 0,
      ajax: {
        url: elem.data("lookup"),
        dataType: "json",
        delay: 200,
        data: function (params) { return {q: params.term || "", page: params.page || 1}; },
        processResults: function (data) { return {results: data.results || [], pagination: data.pagination}; }
      }
    });
  }

  function choice(elem) {
    if (elem.data("select2")) { return; }
    elem.select2({theme: "bootstrap", width: "100%", allowClear: !elem.prop("multiple"), placeholder: ""});
  }

  window.TabulaFields = {link: link, choice: choice};

  $(function () {
    $("select.tabula-link").each(function () { link($(this)); });
    $("select.tabula-select").each(function () { choice($(this)); });
  });
})(jQuery);
