/* Plan vs fact: GET /reports/plan/run?period= draws one row per salesperson and currency (planned, won,
   fulfilled, paid, planned and won deals) and a chart of planned against won. Every figure and bar opens
   the grid on exactly its records. Names are set as text, never as HTML. */
(function () {
  "use strict";

  var root = document.getElementById("tabula-plan");
  if (!root) { return; }
  var config = JSON.parse(root.getAttribute("data-config"));
  var T = config.texts;
  var periodEl = document.getElementById("plan-period");
  var datesEl = document.getElementById("plan-dates");
  var tableEl = document.getElementById("plan-table");
  var chartEl = document.getElementById("plan-chart");
  var messageEl = document.getElementById("plan-message");
  var language = config.locale === "ru" ? "ru-RU" : "en-US";
  var numbers = new Intl.NumberFormat(language, {maximumFractionDigits: 2});
  var chart = null;
  var COLUMNS = [
    ["plan_amount", T.planned], ["won_amount", T.won], ["fulfilled", T.fulfilled], ["paid_amount", T.paid],
    ["plan_count", T.plannedDeals], ["won_count", T.wonDeals]
  ];

  config.periods.forEach(function (p) {
    var option = document.createElement("option");
    option.value = p.value;
    option.textContent = p.label;
    periodEl.appendChild(option);
  });
  periodEl.value = new URLSearchParams(window.location.search).get("period") || "month";
  if (periodEl.selectedIndex < 0) { periodEl.value = "month"; }

  function cell(tag, text, className) { return window.TabulaUi.element(tag, text, className); }

  function day(iso) { return window.TabulaUi.localDay(iso, language); }

  function draw(answer) {
    datesEl.textContent = day(answer.first) + " – " + day(answer.last);
    tableEl.textContent = "";
    var head = document.createElement("thead");
    var top = document.createElement("tr");
    top.appendChild(cell("th", T.salesperson));
    top.appendChild(cell("th", T.currency));
    COLUMNS.forEach(function (c) { top.appendChild(cell("th", c[1], "text-right")); });
    head.appendChild(top);
    tableEl.appendChild(head);
    var body = document.createElement("tbody");
    answer.lines.forEach(function (line) {
      var tr = document.createElement("tr");
      tr.appendChild(cell("th", line.manager));
      tr.appendChild(cell("td", line.currency));
      COLUMNS.forEach(function (c) {
        var value = c[0] === "fulfilled" ? line.fulfilled : line.figures[c[0]];
        tr.appendChild(window.TabulaUi.figureCell(value, line.links[c[0]], numbers.format, T.open));
      });
      body.appendChild(tr);
    });
    tableEl.appendChild(body);
    messageEl.textContent = answer.lines.length ? "" : T.empty;
    chartEl.hidden = !answer.lines.length;
    if (!answer.lines.length || !window.echarts) { return; }
    if (!chart) { chart = window.TabulaReportChart.attach(chartEl, config.locale); }
    var shown = window.TabulaReportChart.numberFormat(config.locale);
    var labels = answer.lines.map(function (l) { return [l.manager, l.currency].filter(Boolean).join(" / "); });
    chart.setOption({
      animation: false,
      tooltip: {trigger: "item", renderMode: "richText", confine: true, valueFormatter: shown},
      legend: {bottom: 0},
      grid: {left: 8, right: 8, top: 16, bottom: 36, containLabel: true},
      xAxis: {type: "category", data: labels, axisLabel: {interval: "auto", hideOverlap: true, width: 120, overflow: "truncate"}},
      yAxis: {type: "value", axisLabel: {formatter: shown}},
      series: [["plan_amount", T.planned], ["won_amount", T.won]].map(function (pair) {
        return {
          name: pair[1],
          type: "bar",
          data: answer.lines.map(function (l) { return {value: l.figures[pair[0]] || 0, url: l.links[pair[0]]}; })
        };
      })
    }, true);
  }

  function run() {
    messageEl.textContent = "";
    var query = new URLSearchParams({period: periodEl.value});
    window.history.replaceState(null, "", window.location.pathname + "?" + query.toString());
    window.TabulaUi.getJson(config.runUrl + "?" + query.toString(), T.failed)
      .then(draw)
      .catch(function (error) { messageEl.textContent = error.message || T.failed; });
  }

  /* The workbook is written by a worker: the export's page shows its progress, then the download. */
  function exportWorkbook() {
    messageEl.textContent = "";
    var csrf = root.querySelector("input[name=csrf_token]").value;
    window.TabulaUi.startExport(config.exportUrl, {period: periodEl.value}, csrf, T.failed)
      .catch(function (error) { messageEl.textContent = error.message || T.failed; });
  }

  document.getElementById("plan-export").addEventListener("click", exportWorkbook);
  periodEl.addEventListener("change", run);
  document.getElementById("plan-form").addEventListener("submit", function (event) { event.preventDefault(); run(); });
  run();
}());
