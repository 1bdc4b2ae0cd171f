// A field's background type change: polls its progress (rows done of the total, time left) until it ends,
// then reloads the page, which shows the field as it now is (or the values that did not convert).
(function () {
  "use strict";
  var box = document.getElementById("conversion-progress");
  if (!box || box.dataset.active !== "true") { return; }
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
    document.getElementById("conversion-status").textContent = state.status_label;
    document.getElementById("conversion-message").textContent = state.message || "";
    var bar = document.getElementById("conversion-bar");
    bar.style.width = state.percent + "%";
    bar.setAttribute("aria-valuenow", state.percent);
    bar.textContent = state.percent + " %";
    document.getElementById("conversion-rows").textContent = state.total
      ? fill(box.dataset.rowsOf, {done: number.format(state.done), total: number.format(state.total)}) : "";
    document.getElementById("conversion-left").textContent =
      state.seconds_left ? fill(box.dataset.left, {time: duration(state.seconds_left)}) : "";
    if (state.finished) { window.location.reload(); }
    return state.finished;
  }
  function poll() {
    fetch(box.dataset.statusUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { if (!response.ok) { throw new Error(response.status); } return response.json(); })
      .then(function (state) { if (!show(state)) { setTimeout(poll, 1000); } })
      .catch(function () {
        document.getElementById("conversion-message").textContent = box.dataset.failed;
        setTimeout(poll, 3000);
      });
  }
  poll();
})();
