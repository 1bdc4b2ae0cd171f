// The deal board: drag a card to another column to change the deal's stage (HTML5 drag and drop).
// The server checks and saves the move; on success the card keeps its place and the column totals are
// refreshed, on failure it goes back where it was and the reason is shown. Text only via textContent.
(function () {
  "use strict";

  function init() {
    var board = document.getElementById("deal-board");
    var mineBox = document.getElementById("board-mine");
    if (mineBox) {
      mineBox.addEventListener("change", function () { mineBox.form.submit(); });
    }
    if (board) { follow(board); }
    if (!board || board.getAttribute("data-can-move") !== "true") {
      return;
    }
    var moveUrl = board.getAttribute("data-move-url");
    var pipelineId = parseInt(board.getAttribute("data-pipeline-id"), 10);
    var mine = board.getAttribute("data-mine") === "true";
    var tokenInput = board.querySelector("input[name=csrf_token]");
    var token = tokenInput ? tokenInput.value : "";
    var message = document.getElementById("board-message");
    var dragged = null;

    function columnOf(element) {
      return element ? element.closest(".tabula-board-column") : null;
    }

    function showMessage(text) {
      if (!message) { return; }
      message.textContent = text || "";
      message.style.display = text ? "" : "none";
    }

    function updateColumn(stageId, data) {
      var column = board.querySelector(".tabula-board-column[data-stage-id='" + stageId + "']");
      if (!column || !data) { return; }
      column.querySelector(".board-count").textContent = String(data.count);
      var list = column.querySelector(".board-totals");
      while (list.firstChild) { list.removeChild(list.firstChild); }
      (data.totals || []).forEach(function (total) {
        var item = document.createElement("li");
        item.textContent = total.text;
        list.appendChild(item);
      });
      var more = column.querySelector(".board-more");
      if (more) {
        var hidden = data.count - column.querySelectorAll(".tabula-board-card").length;
        var link = more.querySelector("a");
        if (hidden > 0 && link) {
          link.textContent = board.getAttribute("data-more-template").replace("__N__", String(hidden));
          more.style.display = "";
        } else {
          more.style.display = "none";
        }
      }
    }

    function putBack(card, origin, next) {
      if (next && next.parentNode === origin) {
        origin.insertBefore(card, next);
      } else {
        origin.appendChild(card);
      }
    }

    function send(card, origin, next, stageId) {
      card.classList.add("board-saving");
      card.setAttribute("draggable", "false");
      var body = {
        deal_id: parseInt(card.getAttribute("data-deal-id"), 10),
        stage_id: stageId,
        version: parseInt(card.getAttribute("data-version"), 10),
        pipeline_id: pipelineId,
        mine: mine
      };
      function done() {
        card.classList.remove("board-saving");
        card.setAttribute("draggable", "true");
      }
      function fail(text) {
        putBack(card, origin, next);
        done();
        showMessage(text || board.getAttribute("data-error-message"));
      }
      fetch(moveUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": token},
        body: JSON.stringify(body)
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (response.ok && data.ok) {
            card.setAttribute("data-version", String(data.version));
            done();
            showMessage("");
            Object.keys(data.columns || {}).forEach(function (sid) { updateColumn(sid, data.columns[sid]); });
          } else {
            fail(data.message);
          }
        });
      }).catch(function () {
        fail(board.getAttribute("data-network-message"));
      });
    }

    board.addEventListener("dragstart", function (event) {
      var card = event.target.closest ? event.target.closest(".tabula-board-card[draggable=true]") : null;
      if (!card) { return; }
      dragged = card;
      card.classList.add("board-dragging");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", card.getAttribute("data-deal-id"));
    });

    board.addEventListener("dragend", function () {
      if (dragged) { dragged.classList.remove("board-dragging"); }
      dragged = null;
      board.querySelectorAll(".board-drop-target").forEach(function (c) { c.classList.remove("board-drop-target"); });
    });

    board.addEventListener("dragover", function (event) {
      var column = columnOf(event.target);
      if (!dragged || !column || column === columnOf(dragged)) { return; }
      event.preventDefault();
      event.dataTransfer.dropEffect = "move";
      column.classList.add("board-drop-target");
    });

    board.addEventListener("dragleave", function (event) {
      var column = columnOf(event.target);
      if (column && !column.contains(event.relatedTarget)) {
        column.classList.remove("board-drop-target");
      }
    });

    board.addEventListener("drop", function (event) {
      var column = columnOf(event.target);
      var card = dragged;
      if (!card || !column) { return; }
      event.preventDefault();
      column.classList.remove("board-drop-target");
      var origin = card.parentNode;
      if (column === columnOf(card)) { return; }
      var next = card.nextSibling;
      var list = column.querySelector(".board-cards");
      list.insertBefore(card, list.firstChild);
      card.classList.remove("board-dragging");
      dragged = null;
      send(card, origin, next, parseInt(column.getAttribute("data-stage-id"), 10));
    });
  }

  // Live (live.js): when deals change anywhere, the columns are drawn again from the server (the same page,
  // read with this user's rights), so a card another user moved moves here too; never during a drag or save.
  function follow(board) {
    var url = board.getAttribute("data-live-url");
    if (!url || !window.TabulaLive) { return; }
    var timer = null;

    function busy() {
      return board.querySelector(".board-dragging, .board-saving") !== null;
    }

    function redraw() {
      timer = null;
      if (busy()) { timer = setTimeout(redraw, 500); return; }
      fetch(window.location.href, {credentials: "same-origin", headers: {"Accept": "text/html"}})
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null) { return; }
          if (busy()) { timer = setTimeout(redraw, 500); return; }
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("deal-board");
          if (!fresh) { return; }
          board.querySelectorAll(".tabula-board-column, :scope > p").forEach(function (node) { node.remove(); });
          Array.prototype.forEach.call(fresh.querySelectorAll(":scope > .tabula-board-column, :scope > p"), function (node) {
            board.appendChild(document.importNode(node, true));
          });
        })
        .catch(function () { /* the next change, or a reload, draws it */ });
    }

    function soon() {
      if (!timer) { timer = setTimeout(redraw, 250); }
    }

    window.TabulaLive.follow(url, document.getElementById("board-live"),
      JSON.parse(board.getAttribute("data-live-texts")), {rows: soon, schema: soon, reload: soon});
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
