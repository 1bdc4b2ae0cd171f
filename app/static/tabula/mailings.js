// Mailings: the template editor's merge-field picker and preview, and a mailing's live progress.
(function () {
  "use strict";

  // --- the template editor ---
  var picker = document.getElementById("merge-insert");
  if (picker) {
    var target = document.getElementById("template-html");
    document.querySelectorAll(".merge-target").forEach(function (field) {
      field.addEventListener("focus", function () { target = field; });
    });
    picker.addEventListener("click", function () {
      var key = document.getElementById("merge-field").value;
      var fallback = document.getElementById("merge-fallback").value.replace(/["\\]/g, "");
      var text = fallback ? "{{ " + key + ' | fallback("' + fallback + '") }}' : "{{ " + key + " }}";
      var start = target.selectionStart || 0, end = target.selectionEnd || 0;
      target.value = target.value.slice(0, start) + text + target.value.slice(end);
      target.focus();
      target.selectionStart = target.selectionEnd = start + text.length;
    });
  }
  var refresh = document.getElementById("preview-refresh");
  if (refresh) {
    var frame = document.getElementById("template-preview");
    var contact = document.getElementById("preview-contact");
    refresh.addEventListener("click", function () {
      var id = String(contact.value || "").replace(/\D/g, "");
      frame.src = frame.dataset.src + (id ? "?contact=" + id : "");
      document.getElementById("send-test-contact").value = id;
    });
  }

  // --- a mailing's progress ---
  var box = document.getElementById("mailing-progress");
  if (!box) { return; }
  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_m, key) { return values[key]; });
  }
  function duration(seconds) {
    if (seconds < 60) { return seconds + " s"; }
    var minutes = Math.round(seconds / 60);
    return minutes < 60 ? minutes + " min" : Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }
  function show(state) {
    var c = state.counts;
    var done = c.sent + c.failed + c.skipped + c.unknown;
    var total = done + state.left;
    var percent = total ? Math.round(done * 100 / total) : 0;
    var bar = document.getElementById("mailing-bar");
    bar.style.width = percent + "%";
    bar.setAttribute("aria-valuenow", percent);
    bar.textContent = percent + " %";
    ["sent", "failed", "skipped", "unknown"].forEach(function (key) {
      var cell = box.querySelector('[data-state="' + key + '"]');
      if (cell) { cell.textContent = c[key]; }
    });
    box.querySelector('[data-state="left"]').textContent = state.left;
    box.querySelector('[data-state="opt_outs"]').textContent = state.opt_outs;
    document.getElementById("mailing-status").textContent = state.status_label;
    document.getElementById("mailing-message").textContent = state.message || "";
    document.getElementById("mailing-rate").textContent =
      state.rate ? fill(box.dataset.rate, {rate: state.rate}) : "";
    document.getElementById("mailing-left").textContent =
      state.seconds_left ? fill(box.dataset.left, {time: duration(state.seconds_left)}) : "";
    return state.status !== "sending";
  }
  function poll() {
    fetch(box.dataset.progressUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { if (!response.ok) { throw new Error(response.status); } return response.json(); })
      .then(function (state) { if (!show(state)) { setTimeout(poll, 1000); } })
      .catch(function () { setTimeout(poll, 5000); });
  }
  poll();
})();
