/* The report builder: a table, row groups, a column group and values chosen from what the user may see
   (GET /reports/fields/<table>); "Show" posts the report to /reports/run and draws the pivot with totals
   and an ECharts chart. Every figure, bar and slice links to the grid showing the records behind it.
   Every text a user typed (table, field and option names) is set as text, never as HTML; the chart's
   tooltips are drawn on the canvas (richText), not as HTML. */
(function () {
  "use strict";

  var root = document.getElementById("tabula-reports");
  if (!root) { return; }
  var config = JSON.parse(root.getAttribute("data-config"));
  var T = config.texts;
  var csrf = root.querySelector("input[name=csrf_token]").value;
  var tableEl = document.getElementById("report-table");
  var viewEl = document.getElementById("report-view");
  var rowsEl = document.getElementById("report-rows");
  var columnEl = document.getElementById("report-column");
  var measuresEl = document.getElementById("report-measures");
  var chartSelect = document.getElementById("report-chart");
  var topEl = document.getElementById("report-top");
  var abcEl = document.getElementById("report-abc");
  var messageEl = document.getElementById("report-message");
  var resultEl = document.getElementById("report-table-result");
  var chartArea = document.getElementById("report-chart-area");
  var leftOutEl = document.getElementById("report-left-out");
  var savedEl = document.getElementById("report-saved");
  var sharedNote = document.getElementById("report-shared-note");
  var periodKind = document.getElementById("report-period-kind");
  var periodField = document.getElementById("report-period-field");
  var periodDays = document.getElementById("report-period-days");
  var periodRange = document.getElementById("report-period-range");
  var periodFrom = document.getElementById("report-period-from");
  var periodTo = document.getElementById("report-period-to");
  var nameEl = document.getElementById("report-name");
  var rolesEl = document.getElementById("report-roles");
  var deleteEl = document.getElementById("report-delete");
  var scheduleEl = document.getElementById("report-schedule");
  var saveMessage = document.getElementById("report-save-message");
  var pinEl = document.getElementById("report-pin");
  var current = null;  // the saved report shown (its JSON), or null for a new one
  var fields = {groups: [], measures: []};
  var chart = null;
  var numbers = new Intl.NumberFormat(config.locale === "ru" ? "ru-RU" : "en-US", {maximumFractionDigits: 2});

  function option(value, text, selected) {
    var el = document.createElement("option");
    el.value = value;
    el.textContent = text;
    if (selected) { el.selected = true; }
    return el;
  }

  function button(text, onClick) {
    var el = document.createElement("button");
    el.type = "button";
    el.className = "btn btn-link btn-xs";
    el.textContent = text;
    el.setAttribute("aria-label", T.remove);
    el.addEventListener("click", onClick);
    return el;
  }

  config.tables.forEach(function (t) { tableEl.appendChild(option(t.slug, t.label)); });
  config.charts.forEach(function (c) { chartSelect.appendChild(option(c.value, c.label)); });
  periodKind.appendChild(option("", T.allPeriods));
  config.periods.forEach(function (p) { periodKind.appendChild(option(p.value, p.label)); });
  config.roles.forEach(function (r) { rolesEl.appendChild(option(String(r.id), r.name)); });

  function periodShown() {
    var kind = periodKind.value;
    periodField.hidden = !kind;
    periodDays.hidden = config.dayCounts.indexOf(kind) < 0;
    periodRange.hidden = kind !== "range";
  }
  periodKind.addEventListener("change", periodShown);

  function fillSaved(list) {
    savedEl.textContent = "";
    savedEl.appendChild(option("", T.newReport));
    [[T.mine, true], [T.shared, false]].forEach(function (pair) {
      var mine = list.filter(function (r) { return r.mine === pair[1]; });
      if (!mine.length) { return; }
      var group = document.createElement("optgroup");
      group.label = pair[0];
      mine.forEach(function (r) {
        group.appendChild(option(String(r.id), pair[1] ? r.name : r.name + " (" + r.owner + ")", current && current.id === r.id));
      });
      savedEl.appendChild(group);
    });
    if (config.standard.length) {
      var builtIn = document.createElement("optgroup");
      builtIn.label = T.standard;
      config.standard.forEach(function (r) {
        builtIn.appendChild(option("std:" + r.key, r.name, !!current && current.key === r.key));
      });
      savedEl.appendChild(builtIn);
    }
  }
  document.getElementById("report-add-row").textContent = "+ " + T.addRow;
  document.getElementById("report-add-measure").textContent = "+ " + T.addMeasure;

  /* A group chooser: the field, and for dates the calendar unit. */
  function groupChooser(allowNone) {
    var wrap = document.createElement("div");
    wrap.className = "tabula-report-group form-inline";
    var field = document.createElement("select");
    field.className = "form-control input-sm report-group-field";
    field.setAttribute("aria-label", allowNone ? T.column : T.rows);
    if (allowNone) { field.appendChild(option("", T.none)); }
    fields.groups.forEach(function (g) { field.appendChild(option(g.name, g.label)); });
    var unit = document.createElement("select");
    unit.className = "form-control input-sm report-group-unit";
    unit.setAttribute("aria-label", T.byValue);
    function units() {
      unit.textContent = "";
      var group = fields.groups.filter(function (g) { return g.name === field.value; })[0];
      var list = group ? group.units : [];
      unit.hidden = !list.length;
      unit.appendChild(option("", T.byValue));
      list.forEach(function (u) { unit.appendChild(option(u.unit, u.label, u.unit === "month")); });
    }
    field.addEventListener("change", units);
    units();
    wrap.appendChild(field);
    wrap.appendChild(unit);
    wrap.value = function () {
      if (!field.value) { return null; }
      return unit.value && !unit.hidden ? field.value + ":" + unit.value : field.value;
    };
    wrap.set = function (entry) {
      var parts = String(entry || "").split(":");
      field.value = parts[0];
      units();
      unit.value = parts[1] || "";
    };
    return wrap;
  }

  function addRow() {
    var chooser = groupChooser(false);
    chooser.appendChild(button("×", function () { chooser.remove(); }));
    rowsEl.appendChild(chooser);
    return chooser;
  }

  function addMeasure() {
    var wrap = document.createElement("div");
    wrap.className = "tabula-report-measure form-inline";
    var fn = document.createElement("select");
    fn.className = "form-control input-sm report-measure-function";
    fn.setAttribute("aria-label", T.measures);
    fields.measures.forEach(function (m) {
      if (m.function === "count" || (m.fields && m.fields.length)) { fn.appendChild(option(m.function, m.label)); }
    });
    var field = document.createElement("select");
    field.className = "form-control input-sm report-measure-field";
    field.setAttribute("aria-label", T.measures);
    function choices() {
      field.textContent = "";
      var measure = fields.measures.filter(function (m) { return m.function === fn.value; })[0];
      var list = (measure && measure.fields) || [];
      field.hidden = !list.length;
      list.forEach(function (f) { field.appendChild(option(f.name, f.label)); });
    }
    fn.addEventListener("change", choices);
    choices();
    wrap.appendChild(fn);
    wrap.appendChild(field);
    wrap.appendChild(button("×", function () { wrap.remove(); }));
    wrap.value = function () {
      return fn.value === "count" ? {"function": "count"} : {"function": fn.value, "field": field.value};
    };
    wrap.set = function (measure) {
      fn.value = measure["function"];
      choices();
      if (measure.field) { field.value = measure.field; }
    };
    measuresEl.appendChild(wrap);
    return wrap;
  }

  var loading = 0;  // only the answer for the table chosen last is drawn
  var requested = null;  // the table whose fields were asked for last

  function loadFields() {
    messageEl.textContent = "";
    var mine = ++loading;
    requested = tableEl.value;
    var url = config.fieldsUrl.replace("__slug__", encodeURIComponent(tableEl.value));
    return fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json().then(function (body) { if (!r.ok) { throw new Error(body.message || T.failed); } return body; }); })
      .then(function (body) {
        if (mine !== loading) { return; }
        fields = body;
        viewEl.textContent = "";
        viewEl.appendChild(option("", T.allRows));
        (body.views || []).forEach(function (v) { viewEl.appendChild(option(String(v.id), v.name)); });
        periodField.textContent = "";
        body.groups.forEach(function (g) {
          if (g.units.some(function (u) { return u.unit === "day"; })) { periodField.appendChild(option(g.name, g.label)); }
        });
        rowsEl.textContent = "";
        columnEl.textContent = "";
        measuresEl.textContent = "";
        addRow();
        columnEl.appendChild(groupChooser(true));
        addMeasure();
        return true;
      })
      .catch(function (error) { messageEl.textContent = error.message || T.failed; });
  }

  /* Show a saved report's definition in the form (the table's fields first), then run it. */
  function apply(report) {
    var d = report.definition;
    current = report;
    tableEl.value = d.table;
    return loadFields().then(function (loaded) {
      if (!loaded) { return; }
      viewEl.value = d.view ? String(d.view) : "";
      rowsEl.textContent = "";
      (d.rows.length ? d.rows : [null]).forEach(function (entry) { addRow().set(entry); });
      if (d.column) { columnEl.firstChild.set(d.column); }
      measuresEl.textContent = "";
      d.measures.forEach(function (m) { addMeasure().set(m); });
      chartSelect.value = d.chart || "bar";
      topEl.value = d.top ? String(d.top) : "";
      abcEl.checked = !!d.abc;
      var period = d.period || {};
      periodKind.value = period.kind || "";
      if (period.field) { periodField.value = period.field; }
      periodDays.value = period.days ? String(period.days) : "30";
      periodFrom.value = period.from || "";
      periodTo.value = period.to || "";
      periodShown();
      showSaved();
      run();
    });
  }

  function showSaved() {
    if (typeof disarm === "function") { disarm(); }
    nameEl.value = current ? current.name : "";
    Array.prototype.forEach.call(rolesEl.options, function (o) {
      o.selected = !!current && current.roles.indexOf(parseInt(o.value, 10)) >= 0;
    });
    var mayChange = !current || current.canChange;
    document.getElementById("report-save-button").hidden = !mayChange;
    deleteEl.hidden = !current || !current.canChange;
    sharedNote.hidden = mayChange;
    sharedNote.textContent = !current ? "" : current.standard ? current.description + " " + T.builtIn : T.readOnly.replace("%(owner)s", current.owner);
    scheduleEl.hidden = !current || !current.canSchedule;
    if (current) { scheduleEl.href = current.scheduleUrl; }
    pinEl.hidden = !current || !config.pinUrl;
    var url = window.location.pathname + (!current ? "" : current.standard ? "?standard=" + encodeURIComponent(current.key) : "?report=" + current.id);
    window.history.replaceState(null, "", url);
  }

  function spec() {
    var rows = Array.prototype.map.call(rowsEl.children, function (c) { return c.value(); })
      .filter(function (v) { return v; });
    var column = columnEl.firstChild ? columnEl.firstChild.value() : null;
    var measures = Array.prototype.map.call(measuresEl.children, function (c) { return c.value(); });
    var body = {table: tableEl.value, rows: rows, column: column, measures: measures};
    if (viewEl.value) { body.view = parseInt(viewEl.value, 10); }
    if (topEl.value) { body.top = parseInt(topEl.value, 10); }
    if (abcEl.checked) { body.abc = true; }
    body.chart = chartSelect.value;
    if (periodKind.value) {
      body.period = {kind: periodKind.value, field: periodField.value};
      if (config.dayCounts.indexOf(periodKind.value) >= 0) {
        body.period.days = parseInt(periodDays.value, 10) || null;
      }
      if (periodKind.value === "range") { body.period.from = periodFrom.value || null; body.period.to = periodTo.value || null; }
    }
    return body;
  }

  function shown(value) {
    if (value === null || value === undefined) { return ""; }
    var n = Number(value);
    return isFinite(n) && String(value).trim() !== "" ? numbers.format(n) : String(value);
  }

  function link(text, href) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    a.title = T.open;
    return a;
  }

  function cell(tag, text, className) { return window.TabulaUi.element(tag, text, className); }

  function drawTable(result) {
    resultEl.textContent = "";
    var measures = result.measures;
    var columns = result.columns.length ? result.columns : [null];
    var groups = result.rows.length ? result.rows[0].length : 0;
    var head = document.createElement("thead");
    var classes = result.classes || null;
    var top = document.createElement("tr");
    for (var g = 0; g < groups; g++) { top.appendChild(cell("th", "")); }
    if (classes) { top.appendChild(cell("th", T.abcClass, "text-center")); }
    columns.forEach(function (c, j) {
      var th = cell("th", null, "text-center");
      th.colSpan = measures.length;
      if (c) { th.appendChild(link(c.label, result.column_links[j])); }
      top.appendChild(th);
    });
    var totalHead = cell("th", T.total, "text-center");
    totalHead.colSpan = measures.length;
    if (result.columns.length) { top.appendChild(totalHead); }
    head.appendChild(top);
    if (measures.length > 1 || !result.columns.length) {
      var second = document.createElement("tr");
      for (var k = 0; k < groups + (classes ? 1 : 0); k++) { second.appendChild(cell("th", "")); }
      var times = columns.length + (result.columns.length ? 1 : 0);
      for (var t = 0; t < times; t++) {
        measures.forEach(function (m) { second.appendChild(cell("th", m.label, "text-right")); });
      }
      head.appendChild(second);
    }
    resultEl.appendChild(head);
    var body = document.createElement("tbody");
    result.rows.forEach(function (headers, i) {
      var tr = document.createElement("tr");
      headers.forEach(function (h) { tr.appendChild(cell("th", h.label)); });
      if (classes) { tr.appendChild(cell("td", classes[i], "text-center tabula-abc-" + classes[i])); }
      columns.forEach(function (c, j) {
        measures.forEach(function (m) {
          var td = cell("td", null, "text-right");
          var value = result.cells[m.alias][i][j];
          if (value !== null) { td.appendChild(link(shown(value), result.links[i][j])); }
          tr.appendChild(td);
        });
      });
      if (result.columns.length) {
        measures.forEach(function (m) {
          var td = cell("td", null, "text-right tabula-report-total");
          td.appendChild(link(shown(result.row_totals[m.alias][i]), result.row_links[i]));
          tr.appendChild(td);
        });
      }
      body.appendChild(tr);
    });
    if (groups) {
      var totals = document.createElement("tr");
      totals.className = "tabula-report-total";
      var label = cell("th", T.total);
      label.colSpan = groups + (classes ? 1 : 0);
      totals.appendChild(label);
      columns.forEach(function (c, j) {
        measures.forEach(function (m) {
          var td = cell("td", null, "text-right");
          td.appendChild(link(shown(result.column_totals[m.alias][j]), result.columns.length ? result.column_links[j] : result.total_link));
          totals.appendChild(td);
        });
      });
      if (result.columns.length) {
        measures.forEach(function (m) {
          var td = cell("td", null, "text-right");
          td.appendChild(link(shown(result.grand_totals[m.alias]), result.total_link));
          totals.appendChild(td);
        });
      }
      body.appendChild(totals);
    }
    resultEl.appendChild(body);
    if (!result.rows.length) { messageEl.textContent = T.empty; }
    leftOutEl.hidden = !result.rows_left_out;
    leftOutEl.textContent = T.leftOut.replace("%(n)s", String(result.rows_left_out));
  }

  function drawChart(result) {
    chartArea.hidden = false;
    if (!window.echarts) { return; }
    if (!chart) { chart = window.TabulaReportChart.attach(chartArea, config.locale); }
    chart.setOption(window.TabulaReportChart.option(result, chartSelect.value, T.total, false, config.locale), true);
  }

  function run(event) {
    if (event) { event.preventDefault(); }
    messageEl.textContent = "";
    fetch(config.runUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(spec())
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) { throw new Error(body.message || T.failed); }
        return body;
      });
    }).then(function (result) {
      drawTable(result);
      drawChart(result);
    }).catch(function (error) { messageEl.textContent = error.message || T.failed; });
  }

  function exportWorkbook() {
    messageEl.textContent = "";
    var body = spec();
    body.chart = chartSelect.value;
    window.TabulaUi.startExport(config.exportUrl, body, csrf, T.failed)
      .catch(function (error) { messageEl.textContent = error.message || T.failed; });
  }

  function send(url, body) {
    return window.TabulaUi.postJson(url, body, csrf, T.failed);
  }

  function refreshSaved() {
    return fetch(config.savedUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (body) { fillSaved(body.reports || []); });
  }

  function save(asNew) {
    messageEl.textContent = "";
    saveMessage.textContent = "";
    if (!nameEl.value.trim()) { messageEl.textContent = T.needName; return; }
    var roles = Array.prototype.filter.call(rolesEl.options, function (o) { return o.selected; })
      .map(function (o) { return parseInt(o.value, 10); });
    var body = {name: nameEl.value, definition: spec(), roles: roles};
    var url = config.savedUrl;
    if (current && current.canChange && !current.standard && !asNew) {
      url = config.savedOneUrl + current.id;
      body.version = current.version;
    }
    send(url, body).then(function (report) {
      current = report;
      showSaved();
      return refreshSaved().then(function () { saveMessage.textContent = T.saved; });
    }).catch(function (error) { messageEl.textContent = error.message || T.failed; });
  }

  /* Delete asks once more on the button itself (no dialog): a second click deletes. */
  var deleteLabel = deleteEl.textContent;
  function disarm() { deleteEl.textContent = deleteLabel; deleteEl.removeAttribute("data-armed"); }
  function remove() {
    if (!current) { return; }
    if (!deleteEl.hasAttribute("data-armed")) {
      deleteEl.setAttribute("data-armed", "1");
      deleteEl.textContent = T.confirmDelete;
      return;
    }
    disarm();
    send(config.savedOneUrl + current.id + "/delete", {}).then(function () {
      current = null;
      showSaved();
      return refreshSaved().then(function () { saveMessage.textContent = T.deleted; });
    }).catch(function (error) { messageEl.textContent = error.message || T.failed; });
  }

  function openSaved() {
    messageEl.textContent = "";
    saveMessage.textContent = "";
    if (!savedEl.value) { current = null; showSaved(); return; }
    if (savedEl.value.indexOf("std:") === 0) {
      var key = savedEl.value.slice(4);
      apply(config.standard.filter(function (r) { return r.key === key; })[0]);
      return;
    }
    fetch(config.savedOneUrl + encodeURIComponent(savedEl.value), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json().then(function (body) { if (!r.ok) { throw new Error(body.message || T.failed); } return body; }); })
      .then(apply)
      .catch(function (error) { messageEl.textContent = error.message || T.failed; });
  }

  /* Pin the open report (standard or saved) to the user's dashboard. */
  function pin() {
    if (!current) { return; }
    messageEl.textContent = "";
    saveMessage.textContent = "";
    var ref = current.standard ? "std:" + current.key : "saved:" + current.id;
    send(config.pinUrl, {ref: ref}).then(function () {
      saveMessage.textContent = T.pinned;
    }).catch(function (error) { messageEl.textContent = error.message || T.failed; });
  }

  savedEl.addEventListener("change", openSaved);
  pinEl.addEventListener("click", pin);
  document.getElementById("report-save-button").addEventListener("click", function () { save(false); });
  document.getElementById("report-save-new").addEventListener("click", function () { save(true); });
  deleteEl.addEventListener("click", remove);
  document.getElementById("report-excel").addEventListener("click", exportWorkbook);
  // Choosing the table already shown (or being loaded) keeps the form as the user has set it.
  tableEl.addEventListener("change", function () { if (tableEl.value !== requested) { loadFields(); } });
  document.getElementById("report-add-row").addEventListener("click", addRow);
  document.getElementById("report-add-measure").addEventListener("click", addMeasure);
  document.getElementById("report-form").addEventListener("submit", run);
  chartSelect.addEventListener("change", function () { if (resultEl.firstChild) { run(); } });
  fillSaved(config.saved);
  periodShown();
  if (config.open) {
    apply(config.open);
  } else if (config.tables.length) {
    loadFields();
  }
}());
