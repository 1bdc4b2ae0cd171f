// Link fields: a select with search-as-you-type against the target table's lookup endpoint.
$(function () {
  $("select.tabula-link").each(function () {
    var elem = $(this);
    elem.select2({
      theme: "bootstrap",
      allowClear: true,
      placeholder: elem.data("placeholder") || "",
      minimumInputLength: 0,
      ajax: {
        url: elem.data("lookup"),
        dataType: "json",
        delay: 200,
        data: function (params) { return {q: params.term || ""}; },
        processResults: function (data) { return {results: data.results}; }
      }
    });
  });
});

// Select fields: options with search, an empty choice for single selects.
$(function () {
  $("select.tabula-select").each(function () {
    $(this).select2({theme: "bootstrap", allowClear: !this.multiple, placeholder: ""});
  });
});
