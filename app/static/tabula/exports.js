// The export page's progress bar: polls the export's status until it is ready, failed or cancelled.
(function () {
  "use strict";
  var box = document.getElementById("export-progress");
  if (!box) { return; }
  var number = new Intl.NumberFormat(document.documentElement.lang || undefined);
  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_m, key) { return values[key]; });
  }
  function duration(seconds) {
    if (seconds < 60) { return seconds + " s"; }
    var minutes = Math.round(seconds / 60);
    return minutes < 60 ? minutes + " min" : Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }
  function show(state) {
    document.getElementById("export-status").textContent = state.status_label;
    document.getElementById("export-message").textContent = state.message || "";
    var bar = document.getElementById("export-bar");
    bar.style.width = state.percent + "%";
    bar.setAttribute("aria-valuenow", state.percent);
    bar.textContent = state.percent + " %";
    var rows = state.total
      ? fill(state.estimated ? box.dataset.rowsOfAbout : box.dataset.rowsOf,
             {done: number.format(state.done), total: number.format(state.total)})
      : fill(box.dataset.rows, {done: number.format(state.done)});
    document.getElementById("export-rows").textContent = rows;
    document.getElementById("export-left").textContent =
      state.seconds_left ? fill(box.dataset.left, {time: duration(state.seconds_left)}) : "";
    var finished = ["ready", "failed", "cancelled"].indexOf(state.status) >= 0;
    if (finished) {
      bar.classList.remove("active", "progress-bar-striped");
      bar.classList.add(state.status === "ready" ? "progress-bar-success" : "progress-bar-danger");
      var cancel = document.getElementById("export-cancel");
      if (cancel) { cancel.classList.add("hidden"); }
    }
    if (state.download) {
      var link = document.getElementById("export-download");
      link.href = state.download;
      link.classList.remove("hidden");
    }
    return finished;
  }
  function poll() {
    fetch(box.dataset.statusUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { if (!response.ok) { throw new Error(response.status); } return response.json(); })
      .then(function (state) { if (!show(state)) { setTimeout(poll, 1000); } })
      .catch(function () {
        document.getElementById("export-message").textContent = box.dataset.failed;
        setTimeout(poll, 3000);
      });
  }
  poll();
})();
