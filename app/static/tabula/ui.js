// Small behaviours of our screens, bound here rather than inline (the Content-Security-Policy runs no inline
// script or handler): confirmations, "Save anyway", the field-type settings, the job page, sticky list columns.
(function () {
  "use strict";

  // <form data-confirm="..."> and <button data-confirm="...">: ask before submitting.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var text = form.getAttribute && form.getAttribute("data-confirm");
    if (text && !window.confirm(text)) { event.preventDefault(); }
  }, true);
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-confirm], a[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) { event.preventDefault(); }
  }, true);

  // Add form with possible duplicates: "Save anyway" resubmits the form with the override flag.
  var saveAnyway = document.getElementById("save-duplicate");
  if (saveAnyway) {
    saveAnyway.addEventListener("click", function () {
      var form = document.querySelector("form#model_form") || document.querySelector("form[method=post]");
      var flag = document.createElement("input");
      flag.type = "hidden";
      flag.name = "_save_duplicate";
      flag.value = "1";
      form.appendChild(flag);
      form.submit();
    });
  }

  // Field forms: show the settings of the chosen type only (disabled inputs are not sent).
  function syncSettings(form, type) {
    form.querySelectorAll(".tabula-setting").forEach(function (el) {
      var on = el.getAttribute("data-for").split(" ").indexOf(type) >= 0;
      el.style.display = on ? "" : "none";
      el.querySelectorAll("input, select").forEach(function (input) { input.disabled = !on; });
    });
  }
  document.querySelectorAll("form.tabula-typed").forEach(function (form) {
    var select = form.querySelector("[name=type]");
    select.addEventListener("change", function () { syncSettings(form, select.value); });
    syncSettings(form, select.value);
  });
  document.querySelectorAll("form[data-field-type]").forEach(function (form) {
    syncSettings(form, form.getAttribute("data-field-type"));
  });

  // A background job's page: progress until it ends.
  var jobState = document.getElementById("job-state");
  if (jobState) {
    var stateUrl = jobState.getAttribute("data-url");
    var showJob = function (state) {
      var pct = state.total ? Math.round(100 * state.done / state.total) : (state.status === "finished" ? 100 : 0);
      var bar = document.getElementById("job-progress");
      bar.style.width = pct + "%";
      bar.textContent = pct + "%";
      bar.setAttribute("aria-valuenow", pct);
      bar.className = "progress-bar" + (state.status === "failed" ? " progress-bar-danger" :
        state.status === "finished" ? " progress-bar-success" : " progress-bar-striped active");
      var status = document.getElementById("job-status");
      status.textContent = state.status_label;
      status.setAttribute("data-status", state.status);
      document.getElementById("job-message").textContent = state.message || "";
      var waiting = document.getElementById("job-waiting");
      waiting.textContent = state.waiting || "";
      waiting.hidden = !state.waiting;
      if (state.result) {
        var pre = document.getElementById("job-result");
        pre.textContent = JSON.stringify(state.result, null, 2);
        pre.style.display = "block";
      }
      return state.status === "queued" || state.status === "running";
    };
    var poll = function () {
      fetch(stateUrl, {credentials: "same-origin"}).then(function (r) { return r.json(); })
        .then(function (state) { if (showJob(state)) { setTimeout(poll, 500); } })
        .catch(function () { setTimeout(poll, 2000); });
    };
    if (showJob(JSON.parse(jobState.textContent))) { poll(); }
  }

  // The deal board fills the window below its filters (the columns scroll inside it, not the page).
  var board = document.getElementById("deal-board");
  if (board) {
    var fitBoard = function () {
      var top = board.getBoundingClientRect().top + window.scrollY;
      board.style.height = Math.max(320, window.innerHeight - top - 34) + "px";
    };
    fitBoard();
    window.addEventListener("resize", fitBoard);
    window.addEventListener("load", fitBoard);
  }

  // Wide lists scroll inside their panel; the row actions and the first data column stay in view.
  function stickColumns(table) {
    var head = table.tHead && table.tHead.rows[0];
    var body = table.tBodies[0] && table.tBodies[0].rows[0];
    if (!head || !body) { return; }
    var count = 0;  // the leading cells of the row checkbox and the row actions
    while (count < body.cells.length && body.cells[count].querySelector("input[type=checkbox], .btn")) {
      count += 1;
    }
    count += 1;  // the first data column
    if (count >= head.cells.length) { return; }
    var left = 0;
    for (var i = 0; i < count; i += 1) {
      var offset = left;
      Array.prototype.forEach.call(table.rows, function (row) {
        var cell = row.cells[i];
        if (cell) {
          cell.classList.add("tabula-sticky");
          cell.style.left = offset + "px";
          if (i === count - 1) { cell.classList.add("tabula-sticky-last"); }
        }
      });
      left += head.cells[i].getBoundingClientRect().width;
    }
  }
  // Offsets come from the columns' widths: measure again once fonts and icons have loaded.
  function stickAll() { document.querySelectorAll("div.table-responsive > table").forEach(stickColumns); }
  stickAll();
  // A JSON POST to one of our endpoints with the page's form token: resolves to the answer, or rejects with
  // an Error carrying the server's message (``fallback`` when it gave none).
  function postJson(url, body, csrf, fallback) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (answer) {
        if (!r.ok) { throw new Error(answer.message || fallback); }
        return answer;
      });
    });
  }

  // A JSON GET of one of our endpoints: the answer, or an Error with the server's message.
  function getJson(url, fallback) {
    return fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}}).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (answer) {
        if (!r.ok) { throw new Error(answer.message || fallback); }
        return answer;
      });
    });
  }

  // Start an export (a report's workbook) and open its page, which shows the progress, then the download.
  function startExport(url, body, csrf, fallback) {
    return postJson(url, body, csrf, fallback).then(function (answer) { window.location.href = answer.url; });
  }

  // An element with ``text`` set as text, never as HTML (names are users' text), and a class.
  function element(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = text; }
    if (className) { node.className = className; }
    return node;
  }

  // A report's figure as a table cell: right-aligned, written by ``format``, a link to the records behind
  // it when there is one (``title`` says so); empty for no figure.
  function figureCell(value, link, format, title) {
    var td = element("td", null, "text-right");
    if (value === null || value === undefined) { return td; }
    if (link) {
      var a = element("a", format(value));
      a.href = link;
      a.title = title;
      td.appendChild(a);
    } else {
      td.textContent = format(value);
    }
    return td;
  }

  // A day ("2026-12-03") as the reader writes it in ``language`` ("ru-RU").
  function localDay(iso, language) {
    return new Date(iso + "T00:00:00").toLocaleDateString(language);
  }

  window.TabulaUi = {
    postJson: postJson, getJson: getJson, startExport: startExport,
    element: element, figureCell: figureCell, localDay: localDay
  };

  window.addEventListener("load", stickAll);
  window.addEventListener("resize", stickAll);
  if (document.fonts && document.fonts.ready) { document.fonts.ready.then(stickAll); }
})();
