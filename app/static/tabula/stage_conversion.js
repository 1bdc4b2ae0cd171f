/* Stage conversion: GET /reports/conversion/run?period=&manager= draws, per pipeline, a funnel chart of the
   deals that reached each stage and a table of reached, shares and lost after each. Every figure and funnel
   layer opens the grid on exactly its deals. Names are set as text, never as HTML. */
(function () {
  "use strict";

  var root = document.getElementById("tabula-conversion");
  if (!root) { return; }
  var config = JSON.parse(root.getAttribute("data-config"));
  var T = config.texts;
  var periodEl = document.getElementById("conversion-period");
  var managerEl = document.getElementById("conversion-manager");
  var datesEl = document.getElementById("conversion-dates");
  var funnelsEl = document.getElementById("conversion-funnels");
  var messageEl = document.getElementById("conversion-message");
  var language = config.locale === "ru" ? "ru-RU" : "en-US";
  var numbers = new Intl.NumberFormat(language, {maximumFractionDigits: 1});
  var charts = [];
  var COLUMNS = [["reached", T.reached], ["fromPrevious", T.fromPrevious], ["fromFirst", T.fromFirst],
                 ["lostAfter", T.lostAfter]];

  function element(tag, text, className) { return window.TabulaUi.element(tag, text, className); }

  function fill(select, choices) {
    choices.forEach(function (c) {
      var option = element("option", c.label);
      option.value = c.value;
      select.appendChild(option);
    });
  }

  var address = new URLSearchParams(window.location.search);
  fill(periodEl, config.periods);
  periodEl.value = address.get("period") || "";
  if (periodEl.selectedIndex < 0) { periodEl.value = ""; }
  if (config.managers.length) {
    fill(managerEl, [{value: "", label: T.everyone}].concat(config.managers.map(function (m) {
      return {value: String(m.id), label: m.name};
    })));
    managerEl.value = address.get("manager") || "";
    if (managerEl.selectedIndex < 0) { managerEl.value = ""; }
    managerEl.hidden = false;
    document.getElementById("conversion-manager-label").hidden = false;
  }

  function day(iso) { return window.TabulaUi.localDay(iso, language); }

  function figure(value, link) { return window.TabulaUi.figureCell(value, link, numbers.format, T.open); }

  function table(funnel) {
    var el = element("table", null, "table table-condensed table-bordered table-hover tabula-conversion-table");
    var head = element("thead");
    var top = element("tr");
    top.appendChild(element("th", T.stage));
    COLUMNS.forEach(function (c) { top.appendChild(element("th", c[1], "text-right")); });
    head.appendChild(top);
    el.appendChild(head);
    var body = element("tbody");
    funnel.steps.forEach(function (step) {
      var tr = element("tr");
      tr.appendChild(element("th", step.name));
      COLUMNS.forEach(function (c) { tr.appendChild(figure(step[c[0]], step.links[c[0]])); });
      body.appendChild(tr);
    });
    el.appendChild(body);
    return el;
  }

  function chartOf(el, funnel) {
    var chart = window.TabulaReportChart.attach(el, config.locale);
    var shown = window.TabulaReportChart.numberFormat(config.locale);
    chart.setOption({
      animation: false,
      tooltip: {trigger: "item", renderMode: "richText", confine: true, valueFormatter: shown},
      series: [{
        type: "funnel",
        sort: "none",  // the pipeline's order, not by size
        minSize: "8%",
        left: 8, right: 8, top: 8, bottom: 8,
        label: {position: "inside", formatter: function (p) { return shown(p.value); }},
        data: funnel.steps.map(function (step) {
          return {name: step.name, value: step.reached, url: step.links.reached};
        })
      }]
    });
    return chart;
  }

  function draw(answer) {
    charts.forEach(function (c) { c.dispose(); });
    charts = [];
    funnelsEl.textContent = "";
    datesEl.textContent = answer.first ? day(answer.first) + " – " + day(answer.last) : "";
    var shown = answer.funnels.filter(function (f) { return f.steps.length; });
    messageEl.textContent = shown.some(function (f) { return f.steps[0].reached || f.unknown; }) ? "" : T.empty;
    shown.forEach(function (funnel) {
      var section = element("section", null, "tabula-conversion");
      section.appendChild(element("h3", funnel.name));
      var row = element("div", null, "tabula-conversion-row");
      var chartEl = element("div", null, "tabula-conversion-chart");
      row.appendChild(chartEl);
      var wrap = element("div", null, "tabula-report-table-wrap");
      wrap.appendChild(table(funnel));
      if (funnel.unknown) {
        var note = element("p", T.unknown + " ", "text-muted small");
        var a = element("a", numbers.format(funnel.unknown));
        a.href = funnel.unknownLink;
        a.title = T.open;
        note.appendChild(a);
        wrap.appendChild(note);
      }
      row.appendChild(wrap);
      section.appendChild(row);
      funnelsEl.appendChild(section);
      if (window.echarts) { charts.push(chartOf(chartEl, funnel)); }
    });
  }

  function run() {
    messageEl.textContent = "";
    var query = new URLSearchParams({period: periodEl.value});
    if (managerEl.value) { query.set("manager", managerEl.value); }
    window.history.replaceState(null, "", window.location.pathname + "?" + query.toString());
    window.TabulaUi.getJson(config.runUrl + "?" + query.toString(), T.failed)
      .then(draw)
      .catch(function (error) { messageEl.textContent = error.message || T.failed; });
  }

  /* The workbook is written by a worker: the export's page shows its progress, then the download. */
  function exportWorkbook() {
    messageEl.textContent = "";
    var csrf = root.querySelector("input[name=csrf_token]").value;
    var body = {period: periodEl.value};
    if (managerEl.value) { body.manager = managerEl.value; }
    window.TabulaUi.startExport(config.exportUrl, body, csrf, T.failed)
      .catch(function (error) { messageEl.textContent = error.message || T.failed; });
  }

  document.getElementById("conversion-export").addEventListener("click", exportWorkbook);
  periodEl.addEventListener("change", run);
  managerEl.addEventListener("change", run);
  document.getElementById("conversion-form").addEventListener("submit", function (event) { event.preventDefault(); run(); });
  run();
}());
