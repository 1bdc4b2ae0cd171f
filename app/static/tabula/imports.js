// The import page: read options with a live preview, the column mapping (new fields for admins), a check of
// every row, then the run with its progress bar, the result, the refused rows and Undo. Text from the file
// and the server only ever goes in through textContent.
(function () {
  "use strict";
  var app = document.getElementById("import-app");
  if (!app) { return; }
  var d = app.dataset;
  var number = new Intl.NumberFormat(document.documentElement.lang || undefined);
  var state = {preview: null, fields: []};
  // A new table from the file: every column starts as a new field of its inferred type.
  var creating = d.newTable === "yes";
  function $(id) { return document.getElementById(id); }
  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_m, key) {
      var value = values[key];
      return typeof value === "number" ? number.format(value) : String(value);
    });
  }
  function duration(seconds) {
    if (seconds < 60) { return seconds + " s"; }
    var minutes = Math.round(seconds / 60);
    return minutes < 60 ? minutes + " min" : Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }
  function alertText(text) {
    var box = $("import-alert");
    box.textContent = text || "";
    box.classList.toggle("hidden", !text);
  }
  function send(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": d.csrf},
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().then(function (data) { return {ok: response.ok, data: data}; });
    });
  }
  function element(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = text; }
    if (cls) { node.className = cls; }
    return node;
  }
  function value(id) { var node = $(id); return node ? node.value : ""; }

  // --- reading and preview ---------------------------------------------------------------------------------
  function options() {
    var chosen = {header_row: value("import-header-row") || "1", header_rows: value("import-header-rows") || "1"};
    if (value("import-sheet")) { chosen.sheet = value("import-sheet"); }
    if (value("import-encoding")) { chosen.encoding = value("import-encoding"); }
    if (value("import-delimiter")) { chosen.delimiter = value("import-delimiter"); }
    return chosen;
  }
  function loadPreview(withOptions) {
    var url = d.previewUrl;
    if (withOptions) { url += "?" + new URLSearchParams(options()).toString(); }
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json().then(function (data) { return {ok: response.ok, data: data}; }); })
      .then(function (answer) {
        if (!answer.ok) { alertText(answer.data.message); return; }
        alertText("");
        showPreview(answer.data);
      })
      .catch(function () { alertText(d.tFailed); });
  }
  function showPreview(data) {
    var previous = state.preview;
    state.preview = data;
    state.fields = data.fields;
    var sheet = $("import-sheet");
    sheet.textContent = "";
    data.sheets.forEach(function (name) {
      var option = element("option", name);
      option.value = name;
      option.selected = name === data.sheet;
      sheet.appendChild(option);
    });
    sheet.disabled = data.sheets.length < 2;
    var found = fill(d.tRows, {total: data.rows_total});
    if (data.encoding) { found += " · " + data.encoding; }
    $("import-found").textContent = found;
    var match = $("import-match");
    if (match.options.length <= 1) {
      data.matches.forEach(function (m) {
        var option = element("option", m.label);
        option.value = m.name;
        match.appendChild(option);
      });
    }
    // The same columns as before (another encoding, say): the choices made in the header stay as they are.
    var sameColumns = previous && previous.titles.join("\u0001") === data.titles.join("\u0001");
    if (!sameColumns) {
      var head = $("import-preview").tHead;
      head.textContent = "";
      var titles = head.insertRow();
      var selects = head.insertRow();
      titles.appendChild(element("th", "#"));
      selects.appendChild(element("th", ""));
      data.titles.forEach(function (title, index) {
        titles.appendChild(element("th", title));
        var cell = element("th");
        cell.appendChild(mappingSelect(index, data.mapping[String(index)] || "", data.inferred[index]));
        selects.appendChild(cell);
      });
      if (creating) { displayChoices(data); }
    }
    var body = $("import-preview").tBodies[0];
    body.textContent = "";
    data.rows.forEach(function (row) {
      var tr = body.insertRow();
      tr.appendChild(element("td", row[0], "text-muted"));
      data.titles.forEach(function (_t, index) {
        var cell = row[1][index];
        tr.appendChild(element("td", cell === null || cell === undefined ? "" : String(cell)));
      });
    });
  }
  function mappingSelect(index, chosen, inferred) {
    var box = element("div");
    var select = element("select", null, "form-control input-sm import-map");
    select.dataset.index = index;
    var none = element("option", d.tSkip);
    none.value = "";
    select.appendChild(none);
    state.fields.forEach(function (f) {
      var option = element("option", f.label);
      option.value = f.name;
      option.selected = f.name === chosen;
      select.appendChild(option);
    });
    box.appendChild(select);
    if (d.admin) {
      var fresh = element("option", d.tNew);
      fresh.value = "new:";
      fresh.selected = creating;
      select.appendChild(fresh);
      var types = element("select", null, "form-control input-sm import-type" + (creating ? "" : " hidden"));
      types.appendChild($("import-types").content.cloneNode(true));
      types.value = inferred ? inferred.type : "text";
      box.appendChild(types);
      select.addEventListener("change", function () { types.classList.toggle("hidden", select.value !== "new:"); });
    }
    return box;
  }
  // The column whose values name the records (the new table's display field): the first text column.
  function displayChoices(data) {
    var display = $("import-display");
    display.textContent = "";
    var first = data.inferred.findIndex(function (t) { return t && t.type === "text"; });
    data.titles.forEach(function (title, index) {
      var option = element("option", title);
      option.value = index;
      option.selected = index === Math.max(first, 0);
      display.appendChild(option);
    });
  }
  function createTable() {
    var display = Number(value("import-display"));
    var columns = newColumns();
    if (!columns.some(function (c) { return c.index === display; })) {
      columns.unshift({index: display, label: state.preview.titles[display], type: "text"});
    }
    var button = $("import-create");
    button.disabled = true;
    send(d.tableUrl, {label: value("import-table-name"), display: display, columns: columns, options: options()})
      .then(function (answer) {
        if (!answer.ok) { button.disabled = false; alertText(answer.data.message); return; }
        window.location.assign(answer.data.url);
      })
      .catch(function () { button.disabled = false; alertText(d.tFailed); });
  }
  function currentMapping() {
    var mapping = {};
    document.querySelectorAll(".import-map").forEach(function (select) {
      if (select.value && select.value !== "new:") { mapping[select.dataset.index] = select.value; }
    });
    return mapping;
  }
  function newColumns() {
    var columns = [];
    document.querySelectorAll(".import-map").forEach(function (select) {
      if (select.value !== "new:") { return; }
      var index = Number(select.dataset.index);
      var type = select.parentNode.querySelector(".import-type");
      columns.push({index: index, label: state.preview.titles[index], type: type ? type.value : "text"});
    });
    return columns;
  }
  function settings() {
    return {options: options(), mapping: currentMapping(), mode: value("import-mode"),
            match_on: value("import-match"), on_error: value("import-on-error")};
  }
  // New fields first (admins), then the mapping names them.
  function withNewFields(then) {
    var columns = newColumns();
    if (!columns.length) { then(); return; }
    send(d.fieldsUrl, {options: options(), columns: columns}).then(function (answer) {
      if (!answer.ok) { alertText(answer.data.message); return; }
      state.preview.mapping = answer.data.mapping;
      loadPreviewThen(then);
    });
  }
  function loadPreviewThen(then) {
    fetch(d.previewUrl + "?" + new URLSearchParams(options()).toString(),
          {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (data) {
        var mapping = state.preview.mapping;
        state.preview = null;
        data.mapping = mapping;
        showPreview(data);
        then();
      });
  }
  function showErrors(target, errors) {
    target.textContent = "";
    Object.keys(errors || {}).forEach(function (column) {
      var entry = errors[column];
      var block = element("div", null, "small");
      block.appendChild(element("strong", column + ": "));
      block.appendChild(element("span", fill(d.tErrors, {count: entry.count}) + " — "));
      block.appendChild(element("span", entry.first.map(function (pair) {
        return fill(d.tRow, {n: pair[0]}) + ": " + pair[1];
      }).join("; "), "text-danger"));
      target.appendChild(block);
    });
  }
  function check() {
    withNewFields(function () {
      send(d.checkUrl, settings()).then(function (answer) {
        if (!answer.ok) { alertText(answer.data.message); return; }
        alertText("");
        var box = $("import-check-result");
        box.textContent = "";
        box.appendChild(element("p", fill(d.tCheck, answer.data)));
        var errors = element("div");
        showErrors(errors, answer.data.errors);
        box.appendChild(errors);
      });
    });
  }
  function start() {
    withNewFields(function () {
      send(d.startUrl, settings()).then(function (answer) {
        if (!answer.ok) { alertText(answer.data.message); return; }
        alertText("");
        $("import-setup").classList.add("hidden");
        $("import-progress").classList.remove("hidden");
        showState(answer.data);
        poll();
      });
    });
  }

  // --- running and the result ------------------------------------------------------------------------------
  function showState(s) {
    $("import-status").textContent = s.status_label;
    $("import-message").textContent = s.message || (s.status === "undone" ? d.tUndone : "");
    var bar = $("import-bar");
    bar.style.width = s.percent + "%";
    bar.setAttribute("aria-valuenow", s.percent);
    bar.textContent = s.percent + " %";
    $("import-rows").textContent = s.total ? fill(d.tRowsOf, {done: s.done, total: s.total}) : "";
    $("import-left").textContent = s.seconds_left ? fill(d.tLeft, {time: duration(s.seconds_left)}) : "";
    var running = s.status === "queued" || s.status === "running" || s.status === "undoing";
    bar.classList.toggle("progress-bar-striped", running);
    bar.classList.toggle("active", running);
    bar.classList.toggle("progress-bar-success", s.status === "finished");
    bar.classList.toggle("progress-bar-danger", s.status === "refused" || s.status === "failed");
    if (!running && s.status !== "uploaded") {
      $("import-result").textContent = fill(d.tResult, s);
      showErrors($("import-errors"), s.errors);
    }
    var refused = $("import-refused");
    refused.classList.toggle("hidden", !s.refused_file);
    if (s.refused_file) { refused.href = s.refused_file; }
    $("import-undo").classList.toggle("hidden", !s.can_undo);
    $("import-rerun").classList.toggle("hidden", !s.can_rerun);
    var table = $("import-table-link");
    table.classList.toggle("hidden", !s.table_url);
    if (s.table_url) { table.href = s.table_url; }
    return running;
  }
  function poll() {
    fetch(d.statusUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { if (!response.ok) { throw new Error(response.status); } return response.json(); })
      .then(function (s) { if (showState(s)) { setTimeout(poll, 1000); } })
      .catch(function () { $("import-message").textContent = d.tFailed; setTimeout(poll, 3000); });
  }
  $("import-undo").addEventListener("click", function () {
    if (!window.confirm(d.tUndoConfirm)) { return; }
    send(d.undoUrl, {}).then(function (answer) {
      if (!answer.ok) { alertText(answer.data.message); return; }
      alertText("");
      showState(answer.data);
      poll();
    });
  });
  $("import-rerun").addEventListener("click", function () {
    send(d.startUrl, {}).then(function (answer) {
      if (!answer.ok) { alertText(answer.data.message); return; }
      showState(answer.data);
      poll();
    });
  });

  if (d.status === "uploaded") {
    ["import-sheet", "import-header-row", "import-header-rows", "import-encoding", "import-delimiter"].forEach(function (id) {
      var node = $(id);
      if (node) { node.addEventListener("change", function () { loadPreview(true); }); }
    });
    $("import-check").addEventListener("click", check);
    $("import-start").addEventListener("click", start);
    if (creating) { $("import-create").addEventListener("click", createTable); }
    loadPreview(false);
  } else {
    poll();
  }
})();
