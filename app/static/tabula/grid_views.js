/* Saved views of the grid: the "Views" menu lists the user's own, shared and default views (each a link to
   ?view=<id>, so the address reproduces it), saves what the grid shows into the open view or as a new one
   (shared with chosen roles), makes a view the table's default (admins) and deletes one after asking.
   Every text a user typed is set as text, never as HTML. */
(function () {
  "use strict";

  var grid = window.TabulaGrid;
  var button = document.getElementById("grid-views-button");
  if (!grid || !button) { return; }
  var config = grid.config, T = config.texts;
  var menu = document.getElementById("grid-views-menu");
  var list = document.getElementById("grid-views-list");
  var nameEl = document.getElementById("grid-view-name");
  var changedEl = document.getElementById("grid-view-changed");
  var saveEl = document.getElementById("grid-view-save");
  var defaultEl = document.getElementById("grid-view-default");
  var deleteEl = document.getElementById("grid-view-delete");
  var scheduleEl = document.getElementById("grid-view-schedule");
  var newForm = document.getElementById("grid-view-new");
  var rolesEl = document.getElementById("grid-view-roles");
  var csrf = document.querySelector("#tabula-grid input[name=csrf_token]").value;
  var current = config.view;  // the open view: {id, name, canChange, default, roles, version} or null
  var admin = false;

  nameEl.textContent = current ? current.name : T.allRows;
  saveEl.textContent = T.saveView;
  deleteEl.textContent = T.deleteView;
  document.getElementById("grid-view-save-as").textContent = T.saveAs;
  newForm.elements.name.placeholder = T.viewName;
  newForm.elements.name.setAttribute("aria-label", T.viewName);
  button.setAttribute("title", T.views);

  function address(view) {
    var url = new URL(window.location.href);
    url.search = "";
    if (view) { url.searchParams.set("view", String(view.id)); }
    else { url.searchParams.set("state", "{}"); }  // all rows, even where the table has a default view
    return url.pathname + url.search;
  }

  function send(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (answer) {
        if (!r.ok) { throw new Error(answer.message || T.notSaved); }
        return answer;
      });
    });
  }

  function mark(text) {
    var span = document.createElement("span");
    span.className = "tabula-grid-view-mark";
    span.textContent = text;
    return span;
  }

  function item(view) {
    var li = document.createElement("li");
    var a = document.createElement("a");
    a.href = address(view);
    a.textContent = view ? view.name : T.allRows;
    a.setAttribute("data-view", view ? String(view.id) : "");
    if (view && view.default) { a.appendChild(mark(T.defaultMark)); }
    else if (view && view.roles && view.roles.length) { a.appendChild(mark(T.sharedMark)); }
    if ((view && current && view.id === current.id) || (!view && !current)) { li.className = "active"; }
    li.appendChild(a);
    return li;
  }

  function show(answer) {
    admin = !!answer.admin;
    list.textContent = "";
    list.appendChild(item(null));
    (answer.views || []).forEach(function (view) {
      if (current && view.id === current.id) { current = view; }
      list.appendChild(item(view));
    });
    rolesEl.textContent = "";
    (answer.roles || []).forEach(function (role) {
      var label = document.createElement("label");
      var box = document.createElement("input");
      box.type = "checkbox";
      box.name = "role";
      box.value = String(role[0]);
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + role[1]));
      rolesEl.appendChild(label);
    });
    if (answer.roles && answer.roles.length) {
      rolesEl.insertBefore(document.createTextNode(T.shareWith + " "), rolesEl.firstChild);
    }
    saveEl.hidden = !(current && current.canChange);
    deleteEl.hidden = !(current && current.canChange);
    defaultEl.hidden = !(current && admin);
    if (scheduleEl) {  // only where the user may export the table
      scheduleEl.hidden = !current;
      if (current) { scheduleEl.href = scheduleEl.getAttribute("data-href") + "?view=" + encodeURIComponent(current.id); }
    }
    defaultEl.textContent = current && current.default ? T.notDefault : T.makeDefault;
  }

  function load() {
    return fetch(config.viewsUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : {views: [], roles: []}; })
      .then(show)
      .catch(function () { show({views: [], roles: []}); });
  }

  function open(state) {
    menu.style.display = state ? "block" : "none";
    button.setAttribute("aria-expanded", state ? "true" : "false");
  }

  button.addEventListener("click", function () { open(menu.style.display !== "block"); });
  document.addEventListener("click", function (e) {
    if (!menu.contains(e.target) && !button.contains(e.target)) { open(false); }
  });
  document.addEventListener("tabula-grid-changed", function () {
    changedEl.hidden = !current;
    changedEl.textContent = "(" + T.changed + ")";
  });

  saveEl.addEventListener("click", function () {
    if (!current) { return; }
    send(config.viewsUrl + "/" + current.id, {
      name: current.name, state: grid.currentState(), version: current.version
    }).then(function (answer) {
      current = answer.view;
      changedEl.hidden = true;
      grid.say(T.viewSaved, "success");
      open(false);
      load();
    }, function (error) { grid.say(error.message, "danger"); });
  });

  newForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var roles = Array.prototype.map.call(rolesEl.querySelectorAll("input:checked"), function (box) {
      return parseInt(box.value, 10);
    });
    send(config.viewsUrl, {name: newForm.elements.name.value, state: grid.currentState(), roles: roles})
      .then(function (answer) { window.location.assign(address(answer.view)); },
        function (error) { grid.say(error.message, "danger"); });
  });

  defaultEl.addEventListener("click", function () {
    if (!current) { return; }
    send(config.viewsUrl + "/" + current.id + "/default", {"default": !current.default})
      .then(function (answer) { current = answer.view; open(false); load(); },
        function (error) { grid.say(error.message, "danger"); });
  });

  deleteEl.addEventListener("click", function () {
    if (!current) { return; }
    open(false);
    var name = current.name;
    var text = T.deleteViewAsk.replace("%(name)s", function () { return name; });
    grid.choose(text, T.delete, T.cancel, function () {
      send(config.viewsUrl + "/" + current.id + "/delete", {})
        .then(function () { window.location.assign(address(null)); },
          function (error) { grid.say(error.message, "danger"); });
    }, function () {});
  });

  load();
})();
