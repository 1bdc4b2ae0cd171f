/* A report's chart (Apache ECharts), shared by the report builder and the dashboard. Every bar, point and
   slice carries the grid address of the records behind it, and a click opens it. Tooltips are drawn on the
   canvas (richText), never as HTML: group labels are users' text. */
(function () {
  "use strict";

  function rowLabels(result, totalLabel) {
    return result.rows.map(function (headers) {
      return headers.map(function (h) { return h.label; }).join(" / ") || totalLabel;
    });
  }

  /* Numbers as the reader writes them (3 000 000,5 in Russian): ECharts' own format is English. */
  function numberFormat(locale) {
    var format = new Intl.NumberFormat(locale === "ru" ? "ru-RU" : "en-US", {maximumFractionDigits: 2});
    return function (value) { return typeof value === "number" ? format.format(value) : String(value); };
  }

  /* The chart's option for a run report: ``kind`` is bar, stacked, line or pie; ``compact`` for a card;
     ``locale`` the page's language (its numbers). */
  function option(result, kind, totalLabel, compact, locale) {
    var first = result.measures[0].alias;
    var shown = numberFormat(locale);
    var labels = rowLabels(result, totalLabel);
    if (kind === "pie") {
      return {
        animation: false,
        tooltip: {trigger: "item", renderMode: "richText", valueFormatter: shown},
        legend: compact ? {type: "scroll", bottom: 0} : undefined,
        series: [{
          type: "pie",
          radius: compact ? ["35%", "62%"] : "65%",
          label: {show: !compact},
          data: result.rows.map(function (h, i) {
            return {name: labels[i], value: Number(result.row_totals[first][i] || 0), url: result.row_links[i]};
          })
        }]
      };
    }
    var columns = result.columns.length ? result.columns : [{label: result.measures[0].label}];
    return {
      animation: false,  // drawn at once: in headless chromium the grow-in animation stalled, leaving slivers
      tooltip: {trigger: "item", renderMode: "richText", confine: true, valueFormatter: shown},
      legend: {type: "scroll", bottom: 0},
      grid: compact ? {left: 8, right: 8, top: 12, bottom: 34, containLabel: true} : {left: 60, right: 20, top: 20, bottom: 60},
      xAxis: {
        type: "category",
        data: labels,
        axisLabel: compact
          ? {interval: "auto", hideOverlap: true, width: labels.length > 3 ? 70 : 110, overflow: "truncate"}
          : {interval: 0, rotate: labels.length > 8 ? 30 : 0}
      },
      yAxis: {type: "value", axisLabel: {formatter: shown}},
      series: columns.map(function (c, j) {
        return {
          name: c.label,
          type: kind === "line" ? "line" : "bar",
          stack: kind === "stacked" ? "all" : undefined,
          data: result.rows.map(function (h, i) {
            var v = result.cells[first][i][j];
            return {value: v === null ? 0 : Number(v), url: result.links[i][j]};
          })
        };
      })
    };
  }

  /* An ECharts instance on ``el`` in the page's language that opens a figure's records on click. */
  function attach(el, locale) {
    var chart = window.echarts.init(el, null, {locale: locale === "ru" ? "RU" : "EN"});
    window.addEventListener("resize", function () { chart.resize(); });
    chart.on("click", function (event) {
      var url = event.data && event.data.url;
      if (url) { window.location.href = url; }
    });
    return chart;
  }

  window.TabulaReportChart = {option: option, attach: attach, numberFormat: numberFormat};
}());
