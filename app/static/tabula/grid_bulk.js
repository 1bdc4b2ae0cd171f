// Bulk edit (views/grid_bulk.py): one field set to one value in the selected rows or in all rows matching the
// grid's filter and search. The exact count comes first (a preview), the confirmation names it, and the
// server refuses a count that changed meanwhile. Big edits run as a job whose progress is polled here.
// User text only ever reaches the page through textContent.
(function () {
  "use strict";
  var G = window.TabulaGrid;
  var panel = document.getElementById("grid-bulk");
  var button = document.getElementById("grid-bulk-button");
  if (!G || !G.table || !panel || !button || !G.config.canEdit || !G.config.bulkUrl) { return; }
  var config = G.config, T = config.texts;
  var editable = config.columns.filter(function (col) { return col.editable; });
  if (!editable.length) { return; }
  var byField = {};
  editable.forEach(function (col) { byField[col.field] = col; });
  var csrf = document.querySelector("#tabula-grid input[name=csrf_token]").value;
  var locale = (config.locale || "en").replace("_", "-");
  var fieldEl = document.getElementById("grid-bulk-field");
  var valueEl = document.getElementById("grid-bulk-value");
  var optionsEl = document.getElementById("grid-bulk-options");
  var selectedEl = document.getElementById("grid-bulk-selected");
  var allEl = document.getElementById("grid-bulk-all");
  var selectedText = document.getElementById("grid-bulk-selected-text");
  var allText = document.getElementById("grid-bulk-all-text");
  var progressEl = document.getElementById("grid-bulk-progress");
  var bar = document.getElementById("grid-bulk-bar");
  var selectedIds = [];
  var running = false;

  function fmt(template, params) {
    return template.replace(/%\((\w+)\)s/g, function (all, name) {
      return params[name] === undefined ? all : String(params[name]);
    });
  }
  function number(n) { return new Intl.NumberFormat(locale).format(n); }

  editable.forEach(function (col) {
    var option = document.createElement("option");
    option.value = col.field;
    option.textContent = col.label;
    fieldEl.appendChild(option);
  });

  function fillOptions() {
    var col = byField[fieldEl.value];
    optionsEl.textContent = "";
    var labels = (col && col.options ? col.options.map(function (o) { return o.label; }) : []);
    if (col && col.editor === "checkbox") { labels = [T.yes, T.no]; }
    labels.forEach(function (label) {
      var option = document.createElement("option");
      option.value = label;
      optionsEl.appendChild(option);
    });
  }
  fieldEl.addEventListener("change", fillOptions);
  fillOptions();

  function post(body) {
    return fetch(config.bulkUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (answer) {
        answer.httpStatus = r.status;
        return answer;
      });
    }, function () { return {httpStatus: 0, message: T.network}; });
  }

  function target() {
    if (allEl.checked) {
      var state = G.currentState();
      return {all: true, filter: state.filter, q: state.q};
    }
    return {ids: selectedIds};
  }

  function countAll() {
    allText.textContent = T.bulkCounting;
    var state = G.currentState();
    post({preview: true, all: true, filter: state.filter, q: state.q, field: fieldEl.value, value: ""})
      .then(function (answer) {
        allText.textContent = answer.httpStatus === 200 ? fmt(T.bulkAll, {n: number(answer.count)})
          : (answer.message || T.notSaved);
        allText.setAttribute("data-count", answer.httpStatus === 200 ? String(answer.count) : "");
      });
  }

  function open() {
    selectedIds = G.selectedIds();
    selectedEl.disabled = !selectedIds.length;
    selectedText.textContent = fmt(T.bulkSelected, {n: number(selectedIds.length)});
    (selectedIds.length ? selectedEl : allEl).checked = true;
    panel.hidden = false;
    countAll();
    fieldEl.focus();
  }

  button.addEventListener("click", function () {
    if (!panel.hidden) { panel.hidden = true; return; }
    open();
  });
  document.getElementById("grid-bulk-close").addEventListener("click", function () { panel.hidden = true; });

  function snapshot(ids, field) {  // the values before, for Ctrl+Z (the selected rows are loaded)
    var cells = [];
    ids.forEach(function (id) {
      var row = G.table.getRow(id);
      if (!row) { return; }
      var data = row.getData();
      cells.push({rowId: id, field: field, before: {value: data[field], label: G.labelOf(data, field)}});
    });
    return {cells: cells, created: []};
  }

  function finished(answer, before) {
    running = false;
    progressEl.hidden = true;
    G.say(answer.message || T.saved, (answer.refused || (answer.result || {}).refused) ? "warning" : "success");
    if (before && before.cells.length) { G.pushUndo(before); }
    G.reload();
  }

  function track(url) {
    progressEl.hidden = false;
    bar.style.width = "0%";
    bar.textContent = "";
    G.say(T.bulkRunning, "info");
    function poll() {
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}}).then(function (r) {
        return r.json().catch(function () { return {}; });
      }).then(function (answer) {
        var percent = Math.max(0, Math.min(100, answer.percent || 0));
        bar.style.width = percent + "%";
        bar.setAttribute("aria-valuenow", String(percent));
        bar.textContent = fmt(T.bulkProgress, {done: number(answer.done || 0), total: number(answer.total || 0)});
        if (answer.finished) { finished(answer, null); return; }
        if (answer.failed || !answer.state) {
          running = false;
          G.say(answer.message || T.notSaved, "danger");
          G.reload();
          return;
        }
        setTimeout(poll, 600);
      }, function () { setTimeout(poll, 1500); });
    }
    poll();
  }

  function apply(body) {
    var before = body.ids ? snapshot(body.ids, body.field) : null;
    running = true;
    G.say(T.saving, "info");
    post(body).then(function (answer) {
      if (answer.httpStatus === 200 && answer.done) { finished(answer, before); return; }
      if (answer.httpStatus === 202 && answer.progress) { track(answer.progress); return; }
      running = false;
      if (answer.httpStatus === 409 && body.all) { countAll(); }
      G.say(answer.message || T.notSaved, answer.httpStatus === 409 ? "warning" : "danger");
    });
  }

  panel.addEventListener("submit", function (e) {
    e.preventDefault();
    if (running) { return; }
    var col = byField[fieldEl.value];
    if (!col) { return; }
    var body = Object.assign({field: col.field, value: valueEl.value}, target());
    post(Object.assign({preview: true}, body)).then(function (answer) {
      if (answer.httpStatus !== 200) { G.say(answer.message || T.notSaved, "danger"); return; }
      if (!answer.count) { G.say(T.bulkNone, "warning"); return; }
      document.getElementById("grid-choice-list").textContent = "";
      var question = fmt(T.bulkAsk, {field: col.label, value: valueEl.value || T.empty, n: number(answer.count)});
      G.choose(question, T.bulkApply, T.cancel, function () {
        apply(Object.assign(body, {count: answer.count}));
      }, function () { G.say("", ""); });
    });
  });

  G.bulkRunning = function () { return running; };
})();
