// The grid follows other people's changes (live.js, views/live.py). The stream names records, never values:
// changed ones are read again through the data endpoint with this user's rights and this grid's filters,
// sort and search, then updated, added (at the top) or, when they no longer match, removed in place. The
// scroll position, selection and sort stay. A cell being edited is never overwritten: its row waits until
// the editor closes, and the editor's user is told who changed the value and to what (their save then meets
// the version check as before). User text only reaches the page through textContent.
(function () {
  "use strict";

  var G = window.TabulaGrid;
  if (!G || !G.table || !G.config.liveUrl || !window.TabulaLive) { return; }
  var table = G.table, config = G.config, T = config.texts;
  var asked = {};  // id -> true: to read again at the next tick (a burst of events makes one request)
  var timer = null;
  var recountTimer = null;
  var authorOf = {};  // id -> who changed it last (for the editor's warning)
  var fromOthers = {};  // id -> true when someone else (or this user elsewhere) changed it: the row flashes

  function fmt(template, params) {
    return template.replace(/%\((\w+)\)s/g, function (all, name) { return params[name] === undefined ? all : params[name]; });
  }

  function flash(row) {
    var el = row && row.getElement();
    if (!el) { return; }
    el.classList.add("grid-live-changed");
    setTimeout(function () { el.classList.remove("grid-live-changed"); }, 1600);
  }

  function editing(id) {
    var cell = G.editedCell();
    return cell && String(cell.id) === String(id) ? cell : null;
  }

  function later(id, work) {
    G.afterEdit(function () { if (!editing(id)) { work(); } else { later(id, work); } });
  }

  function recount() {
    clearTimeout(recountTimer);
    recountTimer = setTimeout(G.recount, 400);
  }

  function update(data, others) {
    var cell = editing(data.id);
    var row = table.getRow(data.id);
    if (cell) {
      var col = G.column(cell.field);
      var before = row ? row.getData()[cell.field] : undefined;
      if (col && JSON.stringify(before) !== JSON.stringify(data[cell.field])) {
        var shown = G.shownText(col, data[cell.field], data) || T.empty;
        G.say(fmt(T.changedUnder, {by: authorOf[data.id] || "", value: shown}), "warning");
      }
      later(data.id, function () { update(data, others); });
      return;
    }
    if (row) {
      row.update(data);
      row.reformat();
      if (others) { flash(row); }
    } else {
      table.addRow(data, true).then(function (added) { if (others) { flash(added); } });
    }
  }

  function remove(id, others) {
    var row = table.getRow(id);
    if (!row) { return; }
    if (editing(id)) {
      G.say(fmt(T.removedUnder, {by: authorOf[id] || ""}), "warning");
      later(id, function () { remove(id, others); });
      return;
    }
    row.delete();
  }

  function readAgain() {
    timer = null;
    var ids = Object.keys(asked);
    asked = {};
    var others = fromOthers;
    fromOthers = {};
    for (var start = 0; start < ids.length; start += 500) {
      (function (chunk) {
        G.readRows(chunk).then(function (answer) {
          if (answer.failed) { return; }
          var found = {};
          answer.rows.forEach(function (data) { found[String(data.id)] = true; update(data, others[String(data.id)]); });
          // Read again but not returned: no longer matches this grid's filter or search, or out of reach.
          chunk.forEach(function (id) { if (!found[id]) { remove(id, others[id]); } });
          recount();
        });
      })(ids.slice(start, start + 500));
    }
  }

  function changed(message) {
    (message.changed || []).forEach(function (id) {
      asked[String(id)] = true;
      authorOf[id] = message.by;
      if (!message.mine) { fromOthers[String(id)] = true; }
    });
    (message.gone || []).forEach(function (id) {
      authorOf[id] = message.by;
      remove(id, !message.mine);
    });
    if ((message.gone || []).length) { recount(); }
    if (!timer && Object.keys(asked).length) { timer = setTimeout(readAgain, 120); }
  }

  function newColumns(message) {
    if (message && message.rules) { G.reload(); }  // access rules changed: which rows show may have too
    fetch(config.columnsUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (answer) {
        if (answer && answer.columns) {
          var added = G.replaceColumns(answer.columns);
          G.say(T.columnsChanged, "success");
          if (added.length) {  // the loaded rows have no values in the new columns yet: read them again
            changed({changed: table.getData().map(function (data) { return data.id; }).filter(Boolean), mine: true});
          }
        }
      })
      .catch(function () { /* the next schema event or a reload brings them */ });
  }

  G.ready.then(function () {
    G.live = window.TabulaLive.follow(config.liveUrl, document.getElementById("grid-live"), T, {
      rows: changed,
      schema: newColumns,
      reload: function () { G.reload(); }
    });
  });
})();
