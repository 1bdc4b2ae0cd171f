/* The dashboard: each pinned report is a card drawn from GET /dashboard/card (the report engine, as the user
   may see it) with the page's period and manager. Every bar, slice and figure opens the grid on exactly the
   records behind it. Pin, unpin and move post to the server and redraw the cards. Users' text (report,
   table and option names) is set as text, never as HTML. */
(function () {
  "use strict";

  var root = document.getElementById("tabula-dashboard");
  if (!root) { return; }
  var config = JSON.parse(root.getAttribute("data-config"));
  var T = config.texts;
  var csrf = root.querySelector("input[name=csrf_token]").value;
  var cardsEl = document.getElementById("dashboard-cards");
  var periodEl = document.getElementById("dashboard-period");
  var managerEl = document.getElementById("dashboard-manager");
  var offeredEl = document.getElementById("dashboard-offered");
  var messageEl = document.getElementById("dashboard-message");
  var numbers = new Intl.NumberFormat(config.locale === "ru" ? "ru-RU" : "en-US", {maximumFractionDigits: 2});
  var cards = config.cards;
  var charts = [];
  var drawing = 0;  // the newest drawing's number: an older answer arriving late is dropped

  function el(tag, className, text) {
    var found = document.createElement(tag);
    if (className) { found.className = className; }
    if (text !== undefined && text !== null) { found.textContent = text; }
    return found;
  }

  function option(value, text) {
    var found = el("option", null, text);
    found.value = value;
    return found;
  }

  config.periods.forEach(function (p) { periodEl.appendChild(option(p.value, p.label)); });
  if (managerEl) { config.managers.forEach(function (m) { managerEl.appendChild(option(String(m.id), m.name)); }); }

  var params = new URLSearchParams(window.location.search);
  periodEl.value = params.get("period") || "";
  if (periodEl.selectedIndex < 0) { periodEl.value = ""; }
  if (managerEl) {
    managerEl.value = params.get("manager") || "";
    if (managerEl.selectedIndex < 0) { managerEl.value = ""; }
  }

  function remember() {
    var wanted = new URLSearchParams();
    if (periodEl.value) { wanted.set("period", periodEl.value); }
    if (managerEl && managerEl.value) { wanted.set("manager", managerEl.value); }
    var query = wanted.toString();
    window.history.replaceState(null, "", window.location.pathname + (query ? "?" + query : ""));
  }

  function send(url, body) {
    return window.TabulaUi.postJson(url, body, csrf, T.failed);
  }

  function fillOffered() {
    offeredEl.textContent = "";
    var shown = {};
    cards.forEach(function (c) { shown[c.ref] = true; });
    config.offered.forEach(function (c) {
      if (!shown[c.ref]) { offeredEl.appendChild(option(c.ref, c.name)); }
    });
    offeredEl.disabled = !offeredEl.options.length;
  }

  function tool(icon, label, onClick) {
    var found = el("button", "btn btn-link btn-xs");
    found.type = "button";
    found.title = label;
    found.setAttribute("aria-label", label);
    var i = el("i", "fa " + icon);
    i.setAttribute("aria-hidden", "true");
    found.appendChild(i);
    found.addEventListener("click", onClick);
    return found;
  }

  function changed(url, body) {
    messageEl.textContent = "";
    send(url, body).then(function (answer) {
      cards = answer.cards;
      draw();
    }).catch(function (error) { messageEl.textContent = error.message || T.failed; });
  }

  function cardUrl(card) {
    var query = new URLSearchParams({ref: card.ref, period: periodEl.value});
    if (managerEl && managerEl.value) { query.set("manager", managerEl.value); }
    return config.cardUrl + "?" + query.toString();
  }

  function isCount(result) {
    return result.measures.length && result.measures[0].alias === "count__rows";
  }

  function fill(card, body, result) {
    var note = body.querySelector(".tabula-card-note");
    if (periodEl.value && !card.byPeriod) { note.textContent = [card.description, T.noPeriod].filter(Boolean).join(" · "); }
    var message = body.querySelector(".tabula-card-message");
    message.textContent = "";
    if (isCount(result)) {
      var figure = body.querySelector(".tabula-card-figure");
      var link = el("a", null, numbers.format(Number(result.grand_totals.count__rows || 0)));
      link.href = result.total_link;
      link.title = T.open;
      figure.textContent = "";
      figure.appendChild(link);
      figure.appendChild(el("small", null, result.measures[0].label));
      figure.hidden = false;
    }
    if (!result.rows.length) {
      message.textContent = T.empty;
      return;
    }
    if (result.rows_left_out) { message.textContent = T.leftOut.replace("%(n)s", String(result.rows_left_out)); }
    var area = body.querySelector(".tabula-card-chart");
    area.hidden = false;
    if (!window.echarts) { return; }
    var chart = window.TabulaReportChart.attach(area, config.locale);
    charts.push(chart);
    chart.setOption(window.TabulaReportChart.option(result, card.chart, T.total, true, config.locale), true);
  }

  function cardElement(card, index) {
    var body = el("section", "tabula-dashboard-card");
    body.setAttribute("data-ref", card.ref);
    var header = el("header");
    var title = el("h3");
    var titleLink = el("a", null, card.name);
    titleLink.href = card.reportUrl;
    titleLink.title = T.openReport;
    title.appendChild(titleLink);
    header.appendChild(title);
    var tools = el("span", "tabula-card-tools");
    if (index > 0) { tools.appendChild(tool("fa-arrow-left", T.moveEarlier, function () { changed(config.moveUrl, {ref: card.ref, offset: -1}); })); }
    if (index < cards.length - 1) { tools.appendChild(tool("fa-arrow-right", T.moveLater, function () { changed(config.moveUrl, {ref: card.ref, offset: 1}); })); }
    tools.appendChild(tool("fa-times", T.unpin, function () { changed(config.unpinUrl, {ref: card.ref}); }));
    header.appendChild(tools);
    body.appendChild(header);
    body.appendChild(el("p", "tabula-card-note", card.description));
    var figure = el("div", "tabula-card-figure");
    figure.hidden = true;
    body.appendChild(figure);
    var area = el("div", "tabula-card-chart");
    area.hidden = true;
    body.appendChild(area);
    body.appendChild(el("p", "tabula-card-message", T.loading));
    return body;
  }

  function draw() {
    drawing += 1;
    var mine = drawing;
    charts.forEach(function (c) { c.dispose(); });
    charts = [];
    cardsEl.textContent = "";
    fillOffered();
    if (!cards.length) {
      cardsEl.appendChild(el("p", "text-muted", T.nothingPinned));
      return;
    }
    cards.forEach(function (card, index) {
      var body = cardElement(card, index);
      cardsEl.appendChild(body);
      fetch(cardUrl(card), {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) {
          return r.json().catch(function () { return {}; }).then(function (answer) {
            if (!r.ok) { throw new Error(answer.message || T.failed); }
            return answer;
          });
        })
        .then(function (result) { if (mine === drawing) { fill(card, body, result); } })
        .catch(function (error) {
          if (mine !== drawing) { return; }
          var message = body.querySelector(".tabula-card-message");
          message.textContent = error.message || T.failed;
          message.classList.add("text-danger");
        });
    });
  }

  periodEl.addEventListener("change", function () { remember(); draw(); });
  if (managerEl) { managerEl.addEventListener("change", function () { remember(); draw(); }); }
  document.getElementById("dashboard-filters").addEventListener("submit", function (event) { event.preventDefault(); });
  document.getElementById("dashboard-add").addEventListener("submit", function (event) {
    event.preventDefault();
    if (offeredEl.value) { changed(config.pinUrl, {ref: offeredEl.value}); }
  });
  document.getElementById("dashboard-reset").addEventListener("click", function () { changed(config.resetUrl, {}); });
  draw();
}());
