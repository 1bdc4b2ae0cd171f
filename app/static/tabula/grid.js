// The spreadsheet grid (views/grid.py): Tabulator renders the rows and the selected range; this file gives
// the columns their formatting and editors (from the field-type registry's grid hints), loads rows by cursor,
// and saves every edit, paste, fill, clear and undo through /grid/<slug>/save (the write path). User text only
// ever reaches the page through textContent.
(function () {
  "use strict";

  // --- the clipboard: TSV as Excel and LibreOffice write it ---------------------------------------------

  // Rows of cells from TSV text: CRLF, LF or CR line ends, an optional last line end, cells wrapped in double
  // quotes holding tabs, line breaks or doubled quotes.
  function parseClipboard(text) {
    var rows = [], row = [], cell = "", quoted = false, fresh = true, i = 0, n = text.length, ch;
    while (i < n) {
      ch = text.charAt(i);
      if (quoted) {
        if (ch === "\"") {
          if (text.charAt(i + 1) === "\"") { cell += "\""; i += 2; continue; }
          quoted = false; i += 1; continue;
        }
        cell += ch; i += 1; continue;
      }
      if (ch === "\"" && fresh) { quoted = true; fresh = false; i += 1; continue; }
      if (ch === "\t") { row.push(cell); cell = ""; fresh = true; i += 1; continue; }
      if (ch === "\r" || ch === "\n") {
        row.push(cell); rows.push(row); row = []; cell = ""; fresh = true;
        i += (ch === "\r" && text.charAt(i + 1) === "\n") ? 2 : 1;
        continue;
      }
      cell += ch; fresh = false; i += 1;
    }
    if (cell !== "" || row.length || quoted) { row.push(cell); rows.push(row); }
    return rows;
  }

  // Cells -> TSV the way Excel writes it (quoted when needed, CRLF after every row).
  function toClipboard(rows) {
    return rows.map(function (cells) {
      return cells.map(function (text) {
        text = text === null || text === undefined ? "" : String(text);
        return /[\t\r\n"]/.test(text) ? "\"" + text.replace(/"/g, "\"\"") + "\"" : text;
      }).join("\t");
    }).join("\r\n") + "\r\n";
  }

  window.TabulaGrid = {parseClipboard: parseClipboard, toClipboard: toClipboard};

  var root = document.getElementById("tabula-grid");
  if (!root || !window.Tabulator) { return; }
  var config = JSON.parse(root.getAttribute("data-config"));
  var T = config.texts;
  var csrf = root.querySelector("input[name=csrf_token]").value;
  var locale = (config.locale || "en").replace("_", "-");
  var statusEl = document.getElementById("grid-status");
  var countEl = document.getElementById("grid-count");
  var searchEl = document.getElementById("grid-search");
  var choiceEl = document.getElementById("grid-choice");
  var columns = config.columns;
  var byField = {};
  columns.forEach(function (col) { byField[col.field] = col; });
  // The saved view (or the address's state) the page opened with: columns, widths, frozen, filter, sort, search.
  var opened = config.state || null;
  var extraFilter = null;  // the part of a view's filter the column heads cannot show (OR groups, other ops)

  function fmt(template, params) {
    return template.replace(/%\((\w+)\)s/g, function (all, name) {
      return params[name] === undefined ? all : String(params[name]);
    });
  }

  function say(text, kind) {
    statusEl.hidden = !text;
    statusEl.textContent = text || "";
    statusEl.className = "tabula-grid-status" + (kind ? " is-" + kind : "");
  }

  // --- showing values ---------------------------------------------------------------------------------

  var parts = new Intl.NumberFormat(locale).formatToParts(12345.6);
  var groupMark = (parts.find(function (p) { return p.type === "group"; }) || {value: ","}).value;
  var decimalMark = (parts.find(function (p) { return p.type === "decimal"; }) || {value: "."}).value;

  // "1234567.5" -> "1 234 567,50" (ru): digit by digit, so 18-digit amounts keep every digit.
  function numberText(value, scale) {
    if (value === null || value === undefined || value === "") { return ""; }
    var text = String(value), sign = "";
    if (!/^-?\d+(\.\d+)?$/.test(text)) { return text; }
    if (text.charAt(0) === "-") { sign = "-"; text = text.slice(1); }
    var whole = text.split(".")[0], frac = text.split(".")[1] || "";
    if (scale !== undefined && scale !== null) {
      frac = (frac + "00000000").slice(0, scale);
    }
    whole = whole.replace(/\B(?=(\d{3})+(?!\d))/g, groupMark);
    return sign + whole + (frac ? decimalMark + frac : "");
  }

  function plainNumber(value) {  // as a person types it back in: no grouping, the language's decimal mark
    return value === null || value === undefined ? "" : String(value).replace(".", decimalMark);
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function dateText(value) {
    var m = /^(\d{4})-(\d{2})-(\d{2})/.exec(value || "");
    return m ? m[3] + "." + m[2] + "." + m[1] : (value || "");
  }

  var timeParts = new Intl.DateTimeFormat("en-GB", {
    timeZone: config.timezone || "UTC", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23"
  });

  function dateTimeText(value) {
    if (!value) { return ""; }
    var when = new Date(value);
    if (isNaN(when.getTime())) { return String(value); }
    var p = {};
    timeParts.formatToParts(when).forEach(function (part) { p[part.type] = part.value; });
    return p.day + "." + p.month + "." + p.year + " " + p.hour + ":" + p.minute;
  }

  function optionOf(col, id) {
    return (col.options || []).find(function (o) { return o.id === id; });
  }

  function ids(value) {
    if (Array.isArray(value)) { return value; }
    if (typeof value === "string") { return value.split(",").filter(Boolean); }
    return [];
  }

  function labelOf(data, field) {
    return (data._labels && data._labels[field]) || "";
  }

  // The value as a person reads it (plain text), for the cell and for Ctrl+C.
  function shownText(col, value, data) {
    if (value === null || value === undefined || value === "") { return ""; }
    switch (col.editor) {
      case "number":
        return numberText(value, col.scale) + (col.suffix ? " " + col.suffix : "") +
          (col.currency ? " " + col.currency : "");
      case "checkbox": return value ? T.yes : T.no;
      case "date": return dateText(value);
      case "datetime": return dateTimeText(value);
      case "select":
        return (optionOf(col, value) || {label: value}).label;
      case "multiselect":
        return ids(value).map(function (id) { return (optionOf(col, id) || {label: id}).label; }).join(", ");
      case "link": case "user":
        return labelOf(data, col.field) || "#" + value;
      default: return String(value);
    }
  }

  // The value as a person types it back in (the editor's starting text).
  function typedText(col, value, data) {
    if (value === null || value === undefined) { return ""; }
    switch (col.editor) {
      case "number": return plainNumber(value);
      case "checkbox": return value ? T.yes : T.no;
      default: return shownText(col, value, data);
    }
  }

  function badge(option) {
    var el = document.createElement("span");
    el.className = "tabula-grid-option";
    el.textContent = option.label;
    if (/^#[0-9a-fA-F]{6}$/.test(option.color || "")) { el.style.backgroundColor = option.color; }
    return el;
  }

  // --- cell states: saving, refused, conflicting ------------------------------------------------------

  var marks = {};  // "<row key>|<field>" -> {state, typed, message}

  function rowKey(data) { return String(data.id); }
  function markOf(data, field) { return marks[rowKey(data) + "|" + field]; }
  function setMark(row, field, mark) {
    var key = rowKey(row.getData()) + "|" + field;
    if (mark) { marks[key] = mark; } else { delete marks[key]; }
    var cell = row.getCell(field);
    if (cell) { row.reformat(); }
  }

  function formatter(col) {
    return function (cell) {
      var data = cell.getRow().getData(), el = cell.getElement(), value = cell.getValue();
      var mark = markOf(data, col.field);
      el.classList.toggle("grid-readonly", !cellEditable(col, data));
      el.classList.remove("grid-refused", "grid-conflict", "grid-pending");
      el.removeAttribute("title");
      var node = document.createElement("span");
      if (mark) {
        el.classList.add("grid-" + mark.state);
        node.textContent = mark.typed;
        if (mark.message) { el.setAttribute("title", mark.message); }
        if (mark.state === "conflict") {
          var saved = document.createElement("span");
          saved.className = "grid-saved-value";
          saved.textContent = mark.savedText || T.empty;
          node.appendChild(document.createTextNode(" "));
          node.appendChild(saved);
        }
        return node;
      }
      if (col.editor === "select" && value) {
        return badge(optionOf(col, value) || {label: value});
      }
      if (col.editor === "multiselect" && value) {
        ids(value).forEach(function (id) { node.appendChild(badge(optionOf(col, id) || {label: id})); });
        return node;
      }
      if (col.editor === "checkbox") {
        node.className = "grid-check";
        node.textContent = value === true ? "✓" : (value === false ? "—" : "");
        return node;
      }
      node.textContent = shownText(col, value, data);
      return node;
    };
  }

  function cellEditable(col, data) {
    return config.canEdit && col.editable && data._editable !== false;
  }

  // --- editors ---------------------------------------------------------------------------------------

  var firstKey = null;  // the key that started editing by typing (it becomes the editor's text)
  var editRange = null;  // the range selected when editing started (Ctrl+Enter fills it)
  var editing = false;
  var editedCell = null;  // {id, field, start} of the cell being edited (grid_live.js warns when it changes)
  var editEnded = [];  // callbacks once the editor closes

  function suggestions(col, text) {
    if (col.editor === "select" || col.editor === "multiselect") {
      var needle = (col.editor === "multiselect" ? text.split(/[;,]/).pop() : text).trim().toLowerCase();
      return Promise.resolve((col.options || []).filter(function (o) {
        return o.label.toLowerCase().indexOf(needle) >= 0;
      }).slice(0, 50).map(function (o) { return {id: o.id, text: o.label}; }));
    }
    if (col.lookup) {
      return fetch(col.lookup + "?q=" + encodeURIComponent(text.trim()), {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.json() : {results: []}; })
        .then(function (answer) { return answer.results || []; })
        .catch(function () { return []; });
    }
    return null;
  }

  function editor(col) {
    return function (cell, onRendered, success, cancel) {
      var data = cell.getRow().getData();
      var mark = markOf(data, col.field);
      var start = mark ? mark.typed : typedText(col, cell.getValue(), data);
      var multiline = col.editor === "textarea";
      var input = document.createElement(multiline ? "textarea" : "input");
      input.className = "tabula-grid-editor";
      input.value = firstKey !== null ? firstKey : start;
      firstKey = null;
      var list = null, items = [], active = -1, done = false, asked = 0;
      var range = editRange;
      editRange = null;
      editing = true;
      editedCell = {id: data.id, field: col.field, start: start};

      function close() {
        editing = false;
        editedCell = null;
        // After the save this close leads to has read the row's version: a change that came in meanwhile
        // must meet the version check, not slip under the user's edit.
        var waiting = editEnded.splice(0);
        if (waiting.length) { setTimeout(function () { waiting.forEach(function (done) { done(); }); }, 0); }
        if (list && list.parentNode) { list.parentNode.removeChild(list); }
      }
      function finish(raw, label, move) {
        if (done) { return; }
        done = true;
        close();
        cancel();  // Tabulator's copy of the data stays as loaded; the save below updates it
        if (raw !== undefined) { commit([{row: cell.getRow(), field: col.field, raw: raw, label: label}], "edit"); }
        if (move) { moveBy(move[0], move[1]); }
      }
      function typedRaw() {
        if (col.editor === "select" && input.value.trim()) {  // a label typed in full is that option
          var exact = (col.options || []).find(function (o) {
            return o.label.toLowerCase() === input.value.trim().toLowerCase();
          });
          if (exact) { return exact.id; }
        }
        return input.value;
      }
      function typedPart() {  // what the suggestions answer: a multiple select's last label being typed
        return (col.editor === "multiselect" ? input.value.split(/[;,]/).pop() : input.value).trim();
      }
      function show(found) {
        items = found || [];
        active = items.length && typedPart() && input.value !== start ? 0 : -1;
        if (!list) {
          list = document.createElement("ul");
          list.className = "tabula-grid-suggest dropdown-menu";
          document.body.appendChild(list);
        }
        var box = input.getBoundingClientRect();
        list.style.left = (box.left + window.scrollX) + "px";
        list.style.top = (box.bottom + window.scrollY) + "px";
        list.style.display = "block";
        list.textContent = "";
        if (!items.length) {
          var none = document.createElement("li");
          none.className = "disabled";
          none.textContent = T.nothingFound;
          list.appendChild(none);
        }
        items.forEach(function (item, index) {
          var li = document.createElement("li");
          var a = document.createElement("a");
          a.href = "#";
          a.textContent = item.text;
          li.className = index === active ? "active" : "";
          a.addEventListener("mousedown", function (e) { e.preventDefault(); choose(index); });
          li.appendChild(a);
          list.appendChild(li);
        });
      }
      function refresh() {
        var pending = suggestions(col, input.value === start ? "" : input.value);
        if (!pending) { return; }
        var ticket = ++asked;
        pending.then(function (found) { if (ticket === asked && !done) { show(found); } });
      }
      function choose(index) {
        var item = items[index];
        if (!item) { return; }
        if (col.editor === "multiselect") {
          var kept = input.value.split(/[;,]/).slice(0, -1).map(function (s) { return s.trim(); }).filter(Boolean);
          kept.push(item.text);
          input.value = kept.join(", ") + ", ";
          input.focus();
          refresh();
          return;
        }
        finish(col.editor === "select" ? item.id : item.id, item.text, [1, 0]);
      }
      input.addEventListener("keydown", function (e) {
        e.stopPropagation();
        if (e.key === "Escape") { e.preventDefault(); done = true; close(); cancel(); return; }
        if (list && items.length && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
          e.preventDefault();
          active = (active + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
          Array.prototype.forEach.call(list.children, function (li, i) { li.className = i === active ? "active" : ""; });
          return;
        }
        if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && range && range.rows.length * range.cols.length > 1) {
          e.preventDefault();  // the typed value into every selected cell, in one save
          var raw = typedRaw();
          finish(undefined);
          commit(editableTargets(range.rows, range.cols, function () { return raw; }), "fill");
          return;
        }
        if (e.key === "Enter" && !(multiline && e.shiftKey)) {
          e.preventDefault();
          if (list && active >= 0 && items[active]) { choose(active); return; }
          finish(input.value === start ? undefined : typedRaw(), undefined, [e.shiftKey ? -1 : 1, 0]);
          return;
        }
        if (e.key === "Tab") {
          e.preventDefault();
          finish(input.value === start ? undefined : typedRaw(), undefined, [0, e.shiftKey ? -1 : 1]);
        }
      });
      input.addEventListener("input", refresh);
      input.addEventListener("blur", function () {
        if (!done) { finish(input.value === start ? undefined : typedRaw()); }
      });
      onRendered(function () {
        input.focus();
        var end = input.value.length;
        input.setSelectionRange(end, end);
        if (col.editor === "select" || col.editor === "multiselect" || col.lookup) { refresh(); }
      });
      return input;
    };
  }

  // --- the table -------------------------------------------------------------------------------------

  var cursors = {1: null};

  function filterFor(col, text) {
    text = String(text || "").trim();
    if (!text) { return null; }
    var allowed = col.operators.map(function (o) { return o.op; });
    var prefixes = [[">=", "ge"], ["<=", "le"], ["!=", "neq"], [">", "gt"], ["<", "lt"], ["=", "eq"], ["^", "sw"]];
    var op = allowed[0], value = text;
    for (var i = 0; i < prefixes.length; i += 1) {
      if (text.indexOf(prefixes[i][0]) === 0) {
        op = prefixes[i][1];
        value = text.slice(prefixes[i][0].length).trim();
        break;
      }
    }
    if (op === "neq" && allowed.indexOf("nct") >= 0 && allowed.indexOf("ct") === 0) { op = "nct"; }
    if (!value) { op = op === "neq" || op === "nct" ? "nempty" : "empty"; }
    if (allowed.indexOf(op) < 0) { op = allowed[0]; value = text; }
    if (col.options && value) {
      var wanted = value.toLowerCase();
      var found = col.options.find(function (o) { return o.label.toLowerCase() === wanted; }) ||
        col.options.find(function (o) { return o.label.toLowerCase().indexOf(wanted) >= 0; });
      if (found) { value = found.id; }
    }
    if (col.editor === "number") { value = value.replace(/[\s\u00a0\u202f]/g, "").replace(",", "."); }
    return {field: col.field, op: op, value: value};
  }

  function queryParams(params) {
    var query = new URLSearchParams();
    query.set("size", String(config.pageSize));
    query.set("versions", "1");
    var after = cursors[params.page || 1];
    if (after) { query.set("after", after); }
    var sort = (params.sort || []).map(function (s) { return (s.dir === "desc" ? "-" : "") + s.field; });
    if (sort.length) { query.set("sort", sort.join(",")); }
    if (searchEl.value.trim()) { query.set("q", searchEl.value.trim()); }
    var filters = (params.filter || []).map(function (f) {
      return byField[f.field] ? filterFor(byField[f.field], f.value) : null;
    }).filter(Boolean);
    if (extraFilter) { filters.push(extraFilter); }
    if (filters.length) { query.set("filter", JSON.stringify({and: filters})); }
    return query;
  }

  // A condition of a saved view as the text typed in its column head (the reverse of filterFor), or null.
  var PREFIX = {ge: ">=", le: "<=", neq: "!=", gt: ">", lt: "<", eq: "=", sw: "^", nct: "!="};
  function headerText(leaf) {
    var col = leaf && byField[leaf.field];
    if (!col || !col.operators.length) { return null; }
    var value = leaf.value === undefined || leaf.value === null ? "" : String(leaf.value);
    if (col.options) {
      var option = optionOf(col, value);
      if (option) { value = option.label; }
    }
    if (leaf.op === "empty") { return "="; }
    if (leaf.op === "nempty") { return "!="; }
    if (!value) { return null; }
    if (leaf.op === col.operators[0].op && "=<>!^".indexOf(value.charAt(0)) < 0) { return value; }
    if (leaf.op === "nct" && col.operators[0].op !== "ct") { return null; }
    return PREFIX[leaf.op] ? PREFIX[leaf.op] + value : null;
  }

  function splitFilter(filter) {
    var heads = [], rest = [], seen = {};
    var leaves = !filter ? [] : Array.isArray(filter) ? filter : filter.and ? filter.and : [filter];
    leaves.forEach(function (leaf) {
      var text = leaf && leaf.field && !seen[leaf.field] ? headerText(leaf) : null;
      if (text !== null) { heads.push({field: leaf.field, value: text}); seen[leaf.field] = true; }
      else { rest.push(leaf); }
    });
    return {heads: heads, rest: rest.length ? {and: rest} : null};
  }

  function normalize(row, names) {
    if (Array.isArray(row)) {
      var named = {};
      names.forEach(function (name, i) { named[name] = row[i]; });
      row = named;
    }
    var data = {_labels: {}};
    Object.keys(row).forEach(function (key) { data[key] = row[key]; });
    if (data._version === undefined && data.row_version !== undefined) { data._version = data.row_version; }
    columns.forEach(function (col) {
      var value = data[col.field];
      if (value && typeof value === "object" && !Array.isArray(value)) {
        data[col.field] = value.id === undefined ? value.value : value.id;
        data._labels[col.field] = value.label || value.text || "";
      }
      if (row._labels && row._labels[col.field]) { data._labels[col.field] = row._labels[col.field]; }
    });
    return data;
  }

  function fetchJson(url) {
    return fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); });
  }

  var lastQuery = "";

  function load(url, ajaxConfig, params) {
    var page = params.page || 1;
    if (page === 1) { cursors = {1: null}; }
    var query = queryParams(params);
    return fetchAnswer(config.rows + "?" + query.toString()).then(function (answer) {
      if (answer.failed) {  // a filter the table cannot take (a word in a number column): say so
        say(answer.message || T.notSaved, "danger");
        return {last_page: 1, data: []};
      }
      var names = (answer.columns || []).map(function (c) { return typeof c === "string" ? c : (c.name || c.field); });
      cursors[page + 1] = answer.next || null;
      if (page === 1) {
        query.delete("after"); query.delete("size"); query.delete("sort"); query.delete("versions");
        lastQuery = query.toString();
        countRows(lastQuery);
      }
      // Each row comes with the version it was read at (a save names it: optimistic locking) and whether
      // this user may edit it, read in the same statement as its values.
      var rows = (answer.rows || []).map(function (r) { return normalize(r, names); });
      return {last_page: answer.next ? page + 1 : page, data: rows};
    });
  }

  // An answer the page can show: 2xx as it is, a refusal as {failed, message} (no exception, no console error).
  function fetchAnswer(url) {
    return fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}}).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (answer) {
        if (!r.ok) { return {failed: true, message: answer.message}; }
        return answer;
      });
    }, function () { return {failed: true, message: T.network}; });
  }

  function countRows(query) {
    if (!config.count) { return; }
    fetchJson(config.count + (query ? "?" + query : "")).then(function (answer) {
      if (query === lastQuery) { showCount(answer.count, answer.exact); }
    }).catch(function () { countEl.textContent = ""; });
  }

  function countText(count, exact) {
    var words = exact ? new Intl.NumberFormat(locale).format(count)
      : new Intl.NumberFormat(locale, {notation: "compact", compactDisplay: "long", maximumFractionDigits: 1}).format(count);
    return fmt(exact ? T.rows : T.about, {n: words});
  }

  function showCount(count, exact) {
    countEl.textContent = countText(count, exact);
    countEl.setAttribute("data-count", String(count));
    countEl.setAttribute("data-exact", exact ? "true" : "false");
  }

  function titleNode(col) {
    return function () {
      var node = document.createElement("span");
      node.textContent = col.label;
      if (!col.editable) { node.className = "grid-readonly-title"; }
      if (col.converting) {
        var mark = document.createElement("i");
        mark.className = "fa fa-refresh grid-converting";
        mark.title = col.converting;
        node.appendChild(document.createTextNode(" "));
        node.appendChild(mark);
      }
      return node;
    };
  }

  var tableEl = document.getElementById("grid-table");
  function definitionOf(col) {
    var def = {
      title: col.label,
      field: col.field,
      titleFormatter: titleNode(col),
      formatter: formatter(col),
      hozAlign: col.align || "left",
      headerSort: !!col.sortable,
      headerFilter: "input",
      headerFilterPlaceholder: col.operators.length ? col.operators[0].label : "",
      minWidth: col.editor === "number" ? 120 : 90,
      maxWidth: 420,
      cssClass: "grid-col-" + (col.editor || "text")
    };
    if (col.editable && config.canEdit && col.editor !== "checkbox") {
      def.editor = editor(col);
      def.editable = function (cell) { return cellEditable(col, cell.getRow().getData()); };
    }
    return def;
  }
  var definitions = columns.map(definitionOf);

  function fitHeight() {
    var top = tableEl.getBoundingClientRect().top + window.scrollY;
    return Math.max(300, window.innerHeight - top - 24) + "px";
  }

  var initialFilter = [];
  if (opened) {
    var shownFields = (opened.fields || []).filter(function (f) { return byField[f]; });
    if (shownFields.length) {
      var position = {};
      shownFields.forEach(function (f, i) { position[f] = i; });
      definitions.sort(function (a, b) {
        var pa = a.field in position ? position[a.field] : 1e6, pb = b.field in position ? position[b.field] : 1e6;
        return pa - pb;
      });
      definitions.forEach(function (def) { def.visible = def.field in position; });
    }
    var widths = opened.widths || {};
    definitions.forEach(function (def, i) {
      if (widths[def.field]) { def.width = widths[def.field]; }
      if (i < (opened.frozen || 0) && def.visible !== false) { def.frozen = true; }
    });
    var parts = splitFilter(opened.filter);
    initialFilter = parts.heads;
    extraFilter = parts.rest;
    if (opened.q) { searchEl.value = opened.q; }
  }

  var table = new window.Tabulator(tableEl, {
    initialSort: opened ? (opened.sort || []).filter(function (s) { return byField[s.replace(/^-/, "")]; })
      .map(function (s) { return {column: s.replace(/^-/, ""), dir: s.charAt(0) === "-" ? "desc" : "asc"}; }) : [],
    initialHeaderFilter: initialFilter,
    height: fitHeight(),
    layout: "fitDataFill",
    columns: definitions,
    index: "id",
    selectableRange: 1,
    selectableRangeColumns: false,
    selectableRangeRows: false,
    editTriggerEvent: "dblclick",
    ajaxURL: config.rows,
    ajaxRequestFunc: load,
    progressiveLoad: "scroll",
    progressiveLoadScrollMargin: 400,
    paginationSize: config.pageSize,
    sortMode: "remote",
    filterMode: "remote",
    headerFilterLiveFilterDelay: 400,
    columnHeaderSortMulti: true,
    movableColumns: true,
    langs: config.langs,
    locale: "default",
    placeholder: T.nothingFound
  });
  window.TabulaGrid.table = table;
  window.TabulaGrid.countText = countText;
  window.addEventListener("resize", function () { table.setHeight(fitHeight()); });

  var searchTimer = null;
  searchEl.addEventListener("input", function () {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(function () { table.setData(); }, 300);
  });

  // --- export: what the grid shows (its columns in their order, filters, sort, search) -------------------

  var frozenCount = opened ? opened.frozen || 0 : 0;

  // What the grid shows, as a saved view keeps it (and as an export writes it).
  function currentState() {
    var shown = table.getColumns().filter(function (c) { return c.isVisible() && byField[c.getField()]; });
    var widths = {};
    shown.forEach(function (c) { widths[c.getField()] = Math.round(c.getWidth()); });
    var filters = table.getHeaderFilters().map(function (f) {
      return byField[f.field] ? filterFor(byField[f.field], f.value) : null;
    }).filter(Boolean);
    if (extraFilter) { filters.push(extraFilter); }
    return {
      fields: shown.map(function (c) { return c.getField(); }),
      widths: widths,
      frozen: frozenCount,
      filter: filters.length ? {and: filters} : null,
      sort: table.getSorters().map(function (s) { return (s.dir === "desc" ? "-" : "") + s.field; }),
      q: searchEl.value.trim()
    };
  }

  // The address reproduces what is on screen: the view's number and, once changed, the state itself.
  // Only a real change goes into the address (and marks a saved view "changed"): the state as opened is
  // taken at the first load, widths aside (the layout sets them from the data) unless a column was resized.
  // It is taken in the load's own handler, not later: a busy browser runs clicks before waiting timers,
  // and a state taken after the user's first changes would hide them from the address. (With progressive
  // loading Tabulator sends no "dataLoaded"; "dataProcessed" follows each first page: opening, sort, filter.)
  var opening = null, resized = false;
  function comparable(state) { return JSON.stringify(Object.assign({}, state, {widths: null})); }
  table.on("dataProcessed", function () {
    if (opening === null) { opening = comparable(currentState()); }
  });
  function rememberInAddress() {
    if (!window.history.replaceState || opening === null) { return; }
    var state = currentState();
    if (!resized && comparable(state) === opening) { return; }
    var address = new URL(window.location.href);
    address.searchParams.set("state", JSON.stringify(state));
    if (config.view) { address.searchParams.set("view", String(config.view.id)); }
    window.history.replaceState(null, "", address.pathname + address.search + address.hash);
    document.dispatchEvent(new CustomEvent("tabula-grid-changed"));
  }
  table.on("columnResized", function () { resized = true; });
  ["dataProcessed", "columnMoved", "columnResized", "columnVisibilityChanged"].forEach(function (name) {
    table.on(name, function () { setTimeout(rememberInAddress, 0); });
  });
  searchEl.addEventListener("change", rememberInAddress);

  // A badge for the part of a view's filter the column heads cannot show (nested and/or groups, other
  // operators): the user sees that the rows are filtered, by which fields, and can clear it.
  var extraEl = document.getElementById("grid-extra-filter");
  function filterFields(node, into) {
    if (!node || typeof node !== "object") { return into; }
    if (Array.isArray(node)) { node.forEach(function (child) { filterFields(child, into); }); return into; }
    if (node.and || node.or) { return filterFields(node.and || node.or, into); }
    var col = byField[node.field];
    var label = col ? col.label : String(node.field || "");
    if (label && into.indexOf(label) < 0) { into.push(label); }
    return into;
  }
  function showExtraFilter() {
    if (!extraEl) { return; }
    extraEl.hidden = !extraFilter;
    if (!extraFilter) { return; }
    var fields = filterFields(extraFilter, []);
    document.getElementById("grid-extra-filter-text").textContent = fmt(T.extraFilter, {fields: fields.join(", ")});
    extraEl.setAttribute("title", fmt(T.extraFilter, {fields: fields.join(", ")}));
  }
  if (extraEl) {
    document.getElementById("grid-extra-filter-clear").addEventListener("click", function () {
      extraFilter = null;
      showExtraFilter();
      table.setData();
      setTimeout(rememberInAddress, 0);
    });
    showExtraFilter();
  }

  var exportForm = document.getElementById("grid-export");
  if (exportForm) {
    exportForm.addEventListener("submit", function () {
      exportForm.elements.state.value = JSON.stringify(currentState());
    });
  }

  // --- where the selection is --------------------------------------------------------------------------

  function visibleColumns() { return table.getColumns().filter(function (c) { return c.isVisible(); }); }
  function displayRows() { return table.getRows("display"); }

  function selection() {
    var range = table.getRanges()[0];
    if (!range) { return null; }
    return {
      range: range, top: range.getTopEdge(), bottom: range.getBottomEdge(),
      left: range.getLeftEdge(), right: range.getRightEdge()
    };
  }

  function activeCell() {
    var sel = selection();
    if (!sel) { return null; }
    var row = displayRows()[sel.top], column = visibleColumns()[sel.left];
    return row && column ? row.getCell(column.getField()) : null;
  }

  function moveBy(down, right) {
    var sel = selection();
    if (!sel) { return; }
    var rows = displayRows(), cols = visibleColumns();
    var r = Math.min(Math.max(sel.top + down, 0), rows.length - 1);
    var c = Math.min(Math.max(sel.left + right, 0), cols.length - 1);
    if (rows[r] && cols[c]) {
      sel.range.setBounds(rows[r].getCell(cols[c].getField()));
      rows[r].getCell(cols[c].getField()).getElement().scrollIntoView({block: "nearest", inline: "nearest"});
    }
    focusGrid();
  }

  function focusGrid() {
    var holder = tableEl.querySelector(".tabulator-tableholder");
    if (holder) { holder.focus({preventScroll: true}); }
  }

  function startEdit(cell, key) {
    var col = byField[cell.getField()];
    if (!col || !cellEditable(col, cell.getRow().getData())) { say(T.readOnly, "warning"); return; }
    if (col.editor === "checkbox") { toggle(cell); return; }
    firstKey = key === undefined ? null : key;
    editRange = rangeCells();
    cell.edit(true);
  }

  function toggle(cell) {
    var value = cell.getValue();
    commit([{row: cell.getRow(), field: cell.getField(), raw: value === true ? false : true}], "edit");
  }

  // --- saving ----------------------------------------------------------------------------------------

  var undoStack = [];
  var busy = false;

  function post(body) {
    return fetch(config.saveUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {message: T.notSaved}; }).then(function (answer) {
        answer.status = r.status;
        return answer;
      });
    });
  }

  // cells: [{row, field, raw, label?}]; creates: [{values: {field: raw}}]; kind: edit | paste | fill | clear | undo
  function commit(cells, kind, creates, mode) {
    creates = creates || [];
    if (!cells.length && !creates.length) { return Promise.resolve(); }
    var changes = [], byRow = new Map();
    cells.forEach(function (item) {
      var data = item.row.getData();
      var col = byField[item.field];
      item.before = {value: data[item.field], label: labelOf(data, item.field)};
      item.typed = item.label !== undefined ? item.label : (typeof item.raw === "string" ? item.raw
        : typedText(col, item.raw, {_labels: {}}));
      if (!byRow.has(item.row)) {
        byRow.set(item.row, {index: changes.length, change: {id: data.id, version: data._version, values: {}}, cells: []});
        changes.push(byRow.get(item.row).change);
      }
      var entry = byRow.get(item.row);
      entry.change.values[item.field] = item.raw;
      entry.cells.push(item);
      setMark(item.row, item.field, {state: "pending", typed: item.typed});
    });
    var entries = Array.from(byRow.values());
    say(T.saving, "info");
    busy = true;
    return post({mode: mode || "all", changes: changes, create: creates}).then(function (answer) {
      busy = false;
      handleAnswer(answer, entries, creates, kind, cells);
    }, function () {
      busy = false;
      cells.forEach(function (item) { setMark(item.row, item.field, {state: "refused", typed: item.typed, message: T.network}); });
      say(T.network, "danger");
    });
  }

  function applySaved(answer, entries, creates, kind) {
    var undo = {cells: [], created: []};
    var fresh = answer.rows || {};
    (answer.updated || []).forEach(function (saved) {
      var entry = entries[saved.index];
      if (!entry) { return; }
      var row = entry.cells[0].row;
      var data = row.getData();
      var update = {_version: saved.version}, labels = Object.assign({}, data._labels || {});
      entry.cells.forEach(function (item) {
        var shown = saved.values[item.field];
        if (!shown) { return; }
        update[item.field] = shown.value;
        if (shown.label !== undefined) { labels[item.field] = shown.label; }
        undo.cells.push({rowId: data.id, field: item.field, before: item.before, after: shown});
        delete marks[rowKey(data) + "|" + item.field];
      });
      update._labels = labels;
      if (fresh[String(saved.id)]) {  // the row as saved, derived values included
        update = Object.assign(normalize(fresh[String(saved.id)]), {_version: saved.version});
      }
      row.update(update);
      row.reformat();
    });
    (answer.created || []).forEach(function (saved) {
      var data = {id: saved.id, _version: saved.version, _labels: {}};
      Object.keys(saved.values).forEach(function (field) {
        data[field] = saved.values[field].value;
        if (saved.values[field].label !== undefined) { data._labels[field] = saved.values[field].label; }
      });
      if (fresh[String(saved.id)]) { data = Object.assign(normalize(fresh[String(saved.id)]), {_version: saved.version}); }
      table.addRow(data, false);
      undo.created.push(saved.id);
    });
    if (kind !== "undo" && (undo.cells.length || undo.created.length)) { undoStack.push(undo); }
  }

  function handleAnswer(answer, entries, creates, kind, cells) {
    if (answer.saved) {
      applySaved(answer, entries, creates, kind);
      // Cells refused while the valid ones were saved keep the typed text and the message.
      markRefusals(answer, entries);
      var refusedCount = (answer.refused || []).length + (answer.conflicts || []).length;
      say(refusedCount ? fmt(T.pasteSummary, {changed: changedCount(answer), refused: refusedCount}) :
        (kind === "undo" ? T.undone : T.saved), refusedCount ? "warning" : "success");
      return;
    }
    if (answer.status === 400 || answer.status === 403 || answer.status === 404 || (!answer.refused && !answer.conflicts)) {
      cells.forEach(function (item) { setMark(item.row, item.field, {state: "refused", typed: item.typed, message: answer.message || T.notSaved}); });
      say(answer.message || T.notSaved, "danger");
      return;
    }
    markRefusals(answer, entries);
    var total = cells.length + creates.reduce(function (n, c) { return n + Object.keys(c.values).length; }, 0);
    var refused = (answer.refused || []).length + (answer.conflicts || []).length;
    if (kind === "edit" && cells.length === 1 && !creates.length) {
      var conflict = (answer.conflicts || [])[0];
      say(conflict ? conflictText(conflict, cells[0]) : ((answer.refused || [])[0] || {}).message || T.notSaved,
        conflict ? "warning" : "danger");
      if (conflict) { offerConflict(conflict, cells[0]); }
      return;
    }
    // A batch: show what would happen and let the user choose.
    var list = document.getElementById("grid-choice-list");
    list.textContent = "";
    var lines = (answer.refused || []).map(function (item) { return (item.label ? item.label + ": " : "") + item.message; });
    (answer.conflicts || []).forEach(function (c) {  // which cells changed meanwhile, with their saved values
      ((entries[c.index] || {}).cells || []).forEach(function (item) {
        lines.push((byField[item.field] || {label: item.field}).label + ": " + conflictText(c, item));
      });
    });
    lines.slice(0, 20).forEach(function (text) {
      var li = document.createElement("li");
      li.textContent = text;
      list.appendChild(li);
    });
    choose(fmt(T.pasteSummary, {changed: Math.max(total - refusedCells(answer), 0), refused: refused}),
      T.saveValid, T.saveNothing,
      function () {
        var keep = cells.filter(function (item) { return !isRefused(answer, entries, item); });
        var keepCreates = creates.map(function (c, i) {
          var values = {};
          Object.keys(c.values).forEach(function (f) {
            if (!(answer.refused || []).some(function (r) { return r.kind === "create" && r.index === i && (!r.field || r.field === f); })) {
              values[f] = c.values[f];
            }
          });
          return {values: values};
        }).filter(function (c) { return Object.keys(c.values).length; });
        commit(keep, kind, keepCreates, "valid");
      },
      function () {
        cells.forEach(function (item) { setMark(item.row, item.field, null); });
        say("", "");
      });
  }

  function refusedCells(answer) {
    return (answer.refused || []).length + (answer.conflicts || []).reduce(function (n, c) {
      return n + Object.keys(c.text || {}).length;
    }, 0);
  }

  function changedCount(answer) {
    return (answer.updated || []).reduce(function (n, u) { return n + Object.keys(u.values).length; }, 0) +
      (answer.created || []).reduce(function (n, c) { return n + Object.keys(c.values).length; }, 0);
  }

  function isRefused(answer, entries, item) {
    var entry = entries.find(function (e) { return e.cells.indexOf(item) >= 0; });
    var index = entries.indexOf(entry);
    return (answer.refused || []).some(function (r) {
      return r.kind === "update" && r.index === index && (!r.field || r.field === item.field || !(r.field in entry.change.values));
    }) || (answer.conflicts || []).some(function (c) { return c.index === index; });
  }

  function markRefusals(answer, entries) {
    (answer.refused || []).forEach(function (r) {
      if (r.kind !== "update" || !entries[r.index]) { return; }
      entries[r.index].cells.forEach(function (item) {
        if (!r.field || r.field === item.field || !(r.field in entries[r.index].change.values)) {
          var message = r.field && r.field !== item.field ? (r.label + ": " + r.message) : r.message;
          setMark(item.row, item.field, {state: "refused", typed: item.typed, message: message});
        }
      });
    });
    (answer.conflicts || []).forEach(function (c) {
      var entry = entries[c.index];
      if (!entry) { return; }
      entry.cells.forEach(function (item) {
        setMark(item.row, item.field, {
          state: "conflict", typed: item.typed, savedText: (c.text || {})[item.field] || "",
          message: conflictText(c, item), conflict: c
        });
      });
    });
  }

  function conflictText(conflict, item) {
    return fmt(T.conflict, {saved: (conflict.text || {})[item.field] || T.empty, yours: item.typed || T.empty});
  }

  function choose(text, yes, no, onYes, onNo) {
    document.getElementById("grid-choice-text").textContent = text;
    var yesEl = document.getElementById("grid-choice-yes"), noEl = document.getElementById("grid-choice-no");
    yesEl.textContent = yes;
    noEl.textContent = no;
    choiceEl.hidden = false;
    function done(action) {
      return function () {
        choiceEl.hidden = true;
        yesEl.onclick = null;
        noEl.onclick = null;
        action();
        focusGrid();
      };
    }
    yesEl.onclick = done(onYes);
    noEl.onclick = done(onNo);
  }

  // A conflict on one cell: the saved value beside the typed one; nothing is overwritten until the user chooses.
  function offerConflict(conflict, item) {
    document.getElementById("grid-choice-list").textContent = "";
    choose(conflictText(conflict, item), T.keepMine, T.takeTheirs, function () {
      var row = item.row;
      row.update({_version: conflict.version});
      commit([{row: row, field: item.field, raw: item.raw, label: item.label}], "edit");
    }, function () {
      takeCurrent(item.row, conflict);
      setMark(item.row, item.field, null);
      say("", "");
    });
  }

  function takeCurrent(row, conflict) {
    var update = {_version: conflict.version}, labels = Object.assign({}, row.getData()._labels || {});
    Object.keys(conflict.current || {}).forEach(function (field) {
      if (!byField[field]) { return; }
      update[field] = conflict.current[field].value;
      if (conflict.current[field].label !== undefined) { labels[field] = conflict.current[field].label; }
    });
    update._labels = labels;
    row.update(update);
    row.reformat();
  }

  // --- keyboard, clipboard ----------------------------------------------------------------------------

  function rangeCells() {
    var sel = selection();
    if (!sel) { return null; }
    var rows = displayRows().slice(sel.top, sel.bottom + 1);
    var cols = visibleColumns().slice(sel.left, sel.right + 1).map(function (c) { return byField[c.getField()]; });
    return {sel: sel, rows: rows, cols: cols};
  }

  function editableTargets(rows, cols, rawOf) {
    var cells = [], skipped = 0;
    rows.forEach(function (row, r) {
      cols.forEach(function (col, c) {
        if (!col) { return; }
        if (!cellEditable(col, row.getData())) { skipped += 1; return; }
        cells.push({row: row, field: col.field, raw: rawOf(row, col, r, c)});
      });
    });
    if (skipped && !cells.length) { say(T.readOnly, "warning"); }
    return cells;
  }

  function fillDown() {
    var found = rangeCells();
    if (!found) { return; }
    var rows = found.rows;
    if (rows.length === 1) {  // one row: copy from the row above, as spreadsheets do
      var above = displayRows()[found.sel.top - 1];
      if (!above) { return; }
      rows = [above].concat(rows);
    }
    var source = rows[0].getData();
    commit(editableTargets(rows.slice(1), found.cols, function (row, col) {
      return source[col.field] === undefined ? null : source[col.field];
    }).map(function (item) {
      item.label = shownText(byField[item.field], source[item.field], source);
      return item;
    }), "fill");
  }

  // --- the fill handle: drag the selected range's bottom-right corner down to copy its values ----------

  var handle = document.createElement("div");
  handle.className = "grid-fill-handle";
  handle.hidden = true;
  document.body.appendChild(handle);
  var preview = document.createElement("div");
  preview.className = "grid-fill-preview";
  preview.hidden = true;
  document.body.appendChild(preview);
  var dragging = null;  // {found, target}: the range being filled and the last row it reaches

  function cornerCell(found) {
    var row = found.rows[found.rows.length - 1];
    var column = visibleColumns()[found.sel.right];
    return row && column ? row.getCell(column.getField()) : null;
  }

  function placeHandle() {
    var found = !editing && config.canEdit ? rangeCells() : null;
    var corner = found ? cornerCell(found) : null;
    var holder = tableEl.querySelector(".tabulator-tableholder");
    if (!corner || !holder) { handle.hidden = true; return; }
    var box = corner.getElement().getBoundingClientRect(), view = holder.getBoundingClientRect();
    var inside = box.bottom > view.top && box.bottom <= view.bottom + 1 && box.right > view.left && box.right <= view.right + 1;
    handle.hidden = !inside;
    handle.style.left = (box.right + window.scrollX - 4) + "px";
    handle.style.top = (box.bottom + window.scrollY - 4) + "px";
  }

  function rowIndexAt(x, y) {
    var el = document.elementFromPoint(x, y);
    var rowEl = el && el.closest ? el.closest(".tabulator-row") : null;
    if (!rowEl) { return -1; }
    var rows = displayRows();
    for (var i = 0; i < rows.length; i += 1) { if (rows[i].getElement() === rowEl) { return i; } }
    return -1;
  }

  handle.addEventListener("mousedown", function (e) {
    var found = rangeCells();
    if (!found) { return; }
    e.preventDefault();
    e.stopPropagation();
    dragging = {found: found, target: found.sel.bottom, x: e.clientX};
  });
  document.addEventListener("mousemove", function (e) {
    if (!dragging) { return; }
    var index = rowIndexAt(dragging.x - 6, e.clientY);
    if (index < 0) { return; }
    dragging.target = Math.max(index, dragging.found.sel.bottom);
    var first = dragging.found.rows[0], last = displayRows()[dragging.target];
    var corner = cornerCell(dragging.found), left = first.getCell(dragging.found.cols[0].field);
    if (!corner || !left || !last) { return; }
    var top = left.getElement().getBoundingClientRect(), right = corner.getElement().getBoundingClientRect();
    var bottom = last.getElement().getBoundingClientRect();
    preview.hidden = false;
    preview.style.left = (top.left + window.scrollX) + "px";
    preview.style.top = (top.top + window.scrollY) + "px";
    preview.style.width = (right.right - top.left) + "px";
    preview.style.height = (bottom.bottom - top.top) + "px";
  });
  document.addEventListener("mouseup", function () {
    if (!dragging) { return; }
    var drag = dragging;
    dragging = null;
    preview.hidden = true;
    if (drag.target > drag.found.sel.bottom) { fillRange(drag.found, drag.target); }
  });

  // The range's rows repeated down to ``target`` (a display-row index): one save through the paste path.
  function fillRange(found, target) {
    var sources = found.rows.map(function (row) { return row.getData(); });
    var rows = displayRows().slice(found.sel.bottom + 1, target + 1);
    var cells = editableTargets(rows, found.cols, function (row, col, r) {
      var source = sources[r % sources.length];
      return source[col.field] === undefined ? null : source[col.field];
    }).map(function (item) {
      var r = rows.indexOf(item.row), source = sources[r % sources.length];
      item.label = shownText(byField[item.field], source[item.field], source);
      return item;
    });
    var columns = visibleColumns();
    var last = displayRows()[target];
    found.sel.range.setBounds(found.rows[0].getCell(columns[found.sel.left].getField()),
      last.getCell(columns[found.sel.right].getField()));
    commit(cells, "fill").then(placeHandle);
  }

  ["rangeAdded", "rangeChanged", "rangeRemoved", "scrollVertical", "scrollHorizontal", "dataProcessed",
    "renderComplete", "columnResized", "columnMoved"].forEach(function (name) {
    table.on(name, function () { setTimeout(placeHandle, 0); });
  });
  window.addEventListener("resize", placeHandle);
  window.addEventListener("scroll", placeHandle);

  function clearRange() {
    var found = rangeCells();
    if (!found) { return; }
    commit(editableTargets(found.rows, found.cols, function () { return null; }).filter(function (item) {
      var value = item.row.getData()[item.field];
      return !(value === null || value === undefined || value === "");
    }), "clear");
  }

  function undo() {
    var last = undoStack.pop();
    if (!last) { say(T.nothingToUndo, "info"); return; }
    var cells = [];
    last.cells.forEach(function (c) {
      var row = table.getRow(c.rowId);
      if (row) {
        cells.push({row: row, field: c.field, raw: c.before.value === undefined ? null : c.before.value,
          label: c.before.label || shownText(byField[c.field], c.before.value, {_labels: {}})});
      }
    });
    // The same cell twice in one step (a paste that covered it twice): the first "before" wins.
    var seen = {};
    cells = cells.filter(function (c) {
      var key = c.row.getData().id + "|" + c.field;
      if (seen[key]) { return false; }
      seen[key] = true;
      return true;
    });
    var deleting = last.created;
    commit(cells, "undo").then(function () {
      if (deleting.length) { removeCreated(deleting); }
    });
  }

  function removeCreated(idsToDelete) {
    post({mode: "all", delete: idsToDelete.map(function (id) {
      var row = table.getRow(id);
      return {id: id, version: row ? row.getData()._version : 0};
    })}).then(function (answer) {
      if (answer.saved) {
        idsToDelete.forEach(function (id) { var row = table.getRow(id); if (row) { row.delete(); } });
        say(T.undone, "success");
      } else {
        say(answer.message || T.notSaved, "danger");
      }
    });
  }

  function copyRange(event) {
    var found = rangeCells();
    if (!found) { return; }
    var text = toClipboard(found.rows.map(function (row) {
      var data = row.getData();
      return found.cols.map(function (col) {
        var mark = col ? markOf(data, col.field) : null;
        return !col ? "" : (mark ? mark.typed : shownText(col, data[col.field], data));
      });
    }));
    event.clipboardData.setData("text/plain", text);
    event.preventDefault();
  }

  function paste(text) {
    var block = parseClipboard(text);
    var found = rangeCells();
    if (!found || !block.length) { return; }
    var rows = displayRows(), cols = visibleColumns();
    var single = block.length === 1 && block[0].length === 1;
    var height = single ? found.rows.length : block.length;
    var width = single ? found.cols.length : block[0].length;
    var cells = [], creates = [], cut = false, readOnly = 0;
    for (var r = 0; r < height; r += 1) {
      var line = single ? block[0] : block[r];
      var row = rows[found.sel.top + r];
      var values = {};
      for (var c = 0; c < (single ? width : line.length); c += 1) {
        var column = cols[found.sel.left + c];
        if (!column) { continue; }
        var col = byField[column.getField()];
        var raw = single ? block[0][0] : line[c];
        if (!col || (row ? !cellEditable(col, row.getData()) : !(col.editable && config.canAdd))) {
          readOnly += 1;
          continue;
        }
        if (row) { cells.push({row: row, field: col.field, raw: raw}); } else { values[col.field] = raw; }
      }
      if (!row && Object.keys(values).length) {
        if (!config.canAdd) { cut = T.noAdd; } else if (table.modules.page && table.modules.page.page < table.modules.page.max) {
          cut = T.pasteCut;
        } else { creates.push({values: values}); }
      }
    }
    if (readOnly && !cells.length && !creates.length) { say(T.readOnly, "warning"); return; }
    commit(cells, "paste", creates).then(function () { if (cut) { say(cut, "warning"); } });
  }

  function ownsFocus() {
    var active = document.activeElement;
    return !editing && active && tableEl.contains(active) && !active.matches("input, textarea, select");
  }

  tableEl.addEventListener("keydown", function (e) {
    if (editing || e.target.matches("input, textarea, select")) { return; }
    var ctrl = e.ctrlKey || e.metaKey;
    var key = e.key;
    var handled = true;
    if (ctrl && (key === "d" || key === "D" || key === "в" || key === "В")) { fillDown(); }
    else if (ctrl && (key === "z" || key === "Z" || key === "я" || key === "Я")) { undo(); }
    else if (!ctrl && (key === "Delete" || key === "Backspace")) { clearRange(); }
    else if (!ctrl && (key === "F2" || key === "Enter")) {
      var cell = activeCell();
      if (cell) { startEdit(cell); }
    } else if (!ctrl && key === " " && activeCell() && byField[activeCell().getField()].editor === "checkbox") {
      startEdit(activeCell());
    } else if (!ctrl && !e.altKey && key.length === 1) {
      var target = activeCell();
      if (target) { startEdit(target, key); }
    } else if (key === "Escape") {  // drop a refused value typed in the active cell: the saved one shows again
      var marked = activeCell();
      if (marked && markOf(marked.getRow().getData(), marked.getField())) { setMark(marked.getRow(), marked.getField(), null); }
      choiceEl.hidden = true;
      say("", "");
    }
    else { handled = false; }
    if (handled) { e.preventDefault(); e.stopPropagation(); }
  }, true);

  tableEl.addEventListener("dblclick", function (e) {
    var cellEl = e.target.closest(".tabulator-cell");
    var cell = cellEl && activeCell();
    if (cell && byField[cell.getField()] && byField[cell.getField()].editor === "checkbox") { startEdit(cell); }
  });

  document.addEventListener("copy", function (e) { if (ownsFocus()) { copyRange(e); } });
  document.addEventListener("paste", function (e) {
    if (!ownsFocus()) { return; }
    e.preventDefault();
    paste(e.clipboardData.getData("text/plain"));
  });
  document.addEventListener("keydown", function (e) {
    if ((e.ctrlKey || e.metaKey) && (e.key === "f" || e.key === "F" || e.key === "а" || e.key === "А")) {
      e.preventDefault();
      searchEl.focus();
      searchEl.select();
    }
  });

  // Delete the rows of the selected range, after a confirmation naming how many (to the recycle bin).
  var deleteButton = document.getElementById("grid-delete");
  if (config.canDelete && deleteButton) {
    deleteButton.hidden = false;
    deleteButton.addEventListener("click", function () {
      var found = rangeCells();
      var rows = found ? found.rows.filter(function (row) { return row.getData().id; }) : [];
      if (!rows.length) { say(T.noRows, "warning"); return; }
      document.getElementById("grid-choice-list").textContent = "";
      choose(fmt(T.deleteAsk, {n: rows.length}), T.delete, T.cancel, function () {
        busy = true;
        post({mode: "all", delete: rows.map(function (row) {
          return {id: row.getData().id, version: row.getData()._version};
        })}).then(function (answer) {
          busy = false;
          if (answer.saved) {
            rows.forEach(function (row) { row.delete(); });
            say(fmt(T.deleted, {n: rows.length}), "success");
          } else {
            say(answer.message || T.notSaved, "danger");
          }
        }, function () { busy = false; say(T.network, "danger"); });
      }, function () { say("", ""); });
    });
  }

  // Show or hide columns (for this page only; saved views will keep the choice).
  var columnsButton = document.getElementById("grid-columns-button");
  var columnsMenu = document.getElementById("grid-columns-menu");
  if (columnsButton && columnsMenu) {
    columns.forEach(function (col) {
      var li = document.createElement("li");
      var label = document.createElement("label");
      var box = document.createElement("input");
      box.type = "checkbox";
      box.checked = !opened || !(opened.fields || []).length || opened.fields.indexOf(col.field) >= 0;
      box.value = col.field;
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + col.label));
      li.appendChild(label);
      columnsMenu.appendChild(li);
      box.addEventListener("change", function () {
        var shown = columnsMenu.querySelectorAll("input:checked").length;
        if (!box.checked && shown === 0) { box.checked = true; return; }
        if (box.checked) { table.showColumn(col.field); } else { table.hideColumn(col.field); }
      });
    });
    var frozenItem = document.createElement("li");
    frozenItem.className = "tabula-grid-frozen";
    var frozenLabel = document.createElement("label");
    frozenLabel.textContent = T.frozen + " ";
    var frozenSelect = document.createElement("select");
    frozenSelect.id = "grid-frozen";
    [0, 1, 2, 3].forEach(function (n) {
      var option = document.createElement("option");
      option.value = String(n);
      option.textContent = String(n);
      option.selected = n === frozenCount;
      frozenSelect.appendChild(option);
    });
    frozenLabel.appendChild(frozenSelect);
    frozenItem.appendChild(frozenLabel);
    columnsMenu.insertBefore(frozenItem, columnsMenu.firstChild);
    frozenSelect.addEventListener("change", function () {
      frozenCount = parseInt(frozenSelect.value, 10) || 0;
      // Redefining a column leaves the table's sorters pointing at the old column: set again afterwards.
      var sorters = table.getSorters().map(function (s) { return {column: s.field, dir: s.dir}; });
      var shown = table.getColumns().filter(function (c) { return c.isVisible() && byField[c.getField()]; });
      var updates = shown.map(function (c, i) {
        var frozen = i < frozenCount;
        return c.getDefinition().frozen === frozen ? null : c.updateDefinition({frozen: frozen});
      });
      Promise.all(updates).then(function () {
        if (sorters.length) { table.setSort(sorters); }
        rememberInAddress();
      });
    });
    columnsButton.addEventListener("click", function () {
      var open = columnsMenu.style.display !== "block";
      columnsMenu.style.display = open ? "block" : "none";
      columnsButton.setAttribute("aria-expanded", open ? "true" : "false");
    });
    document.addEventListener("click", function (e) {
      if (!columnsMenu.contains(e.target) && !columnsButton.contains(e.target)) {
        columnsMenu.style.display = "none";
        columnsButton.setAttribute("aria-expanded", "false");
      }
    });
  }

  window.TabulaGrid.ready = new Promise(function (resolve) { table.on("tableBuilt", resolve); });
  window.TabulaGrid.currentState = currentState;
  window.TabulaGrid.choose = choose;
  window.TabulaGrid.say = say;
  window.TabulaGrid.config = config;
  window.TabulaGrid.busy = function () { return busy; };
  // For grid_bulk.js: the ids of the selected rows, undo of a bulk edit, reloading after one.
  window.TabulaGrid.selectedIds = function () {
    var found = rangeCells();
    return found ? found.rows.map(function (row) { return row.getData().id; }).filter(Boolean) : [];
  };
  window.TabulaGrid.pushUndo = function (entry) { undoStack.push(entry); };
  window.TabulaGrid.labelOf = labelOf;
  window.TabulaGrid.reload = function () { return table.setData(); };

  // For grid_live.js: read rows again as this grid shows them (its filters, sort and search) among ids.
  window.TabulaGrid.readRows = function (ids) {
    var query = queryParams({
      page: 1,
      sort: table.getSorters().map(function (s) { return {field: s.field, dir: s.dir}; }),
      filter: table.getHeaderFilters()
    });
    query.delete("after");
    query.set("size", String(Math.min(500, Math.max(ids.length, 1))));
    query.set("ids", ids.join(","));
    return fetchAnswer(config.rows + "?" + query.toString()).then(function (answer) {
      if (answer.failed) { return answer; }
      var names = (answer.columns || []).map(function (c) { return typeof c === "string" ? c : (c.name || c.field); });
      return {rows: (answer.rows || []).map(function (r) { return normalize(r, names); })};
    });
  };
  window.TabulaGrid.editedCell = function () { return editedCell; };
  window.TabulaGrid.afterEdit = function (done) { if (editing) { editEnded.push(done); } else { done(); } };
  window.TabulaGrid.markOf = markOf;
  window.TabulaGrid.shownText = shownText;
  window.TabulaGrid.column = function (field) { return byField[field]; };
  window.TabulaGrid.recount = function () { countRows(lastQuery); };
  // New, renamed, retyped or archived fields: the columns as the server now gives them. Only the columns that
  // changed are touched (the others keep their place, width, filter and sort; no reload); new ones come last.
  // Returns the new columns' fields (their values are not loaded yet).
  window.TabulaGrid.replaceColumns = function (fresh) {
    var before = byField;
    columns = fresh;
    byField = {};
    columns.forEach(function (col) { byField[col.field] = col; });
    Object.keys(before).forEach(function (field) {
      var gone = !byField[field] && table.getColumn(field);
      if (gone) { gone.delete(); }
    });
    var added = [];
    columns.forEach(function (col) {
      var shown = table.getColumn(col.field);
      if (!shown) {
        table.addColumn(definitionOf(col));
        added.push(col.field);
      } else if (JSON.stringify(before[col.field]) !== JSON.stringify(col)) {
        shown.updateDefinition(definitionOf(col));
      }
    });
    return added;
  };
})();
