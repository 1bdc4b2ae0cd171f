// The navbar's global search: answers while typing (debounced), grouped by table; Enter opens the full
// results page unless a result is highlighted. Everything shown is set as text, never as HTML.
(function () {
  "use strict";
  var form = document.getElementById("global-search");
  var input = document.getElementById("global-search-input");
  var box = document.getElementById("global-search-results");
  if (!form || !input || !box) { return; }
  var answersUrl = form.getAttribute("data-answers");
  var timer = null;
  var sequence = 0;
  var active = -1;
  var MIN = 2;
  var DELAY = 250;

  function links() { return box.querySelectorAll("a.tabula-search-hit"); }

  function hide() {
    box.style.display = "none";
    input.setAttribute("aria-expanded", "false");
    active = -1;
  }

  function show() {
    box.style.display = "block";
    input.setAttribute("aria-expanded", "true");
  }

  function clear() { while (box.firstChild) { box.removeChild(box.firstChild); } }

  function item(text, className) {
    var li = document.createElement("li");
    if (className) { li.className = className; }
    li.textContent = text;
    return li;
  }

  function render(data) {
    clear();
    active = -1;
    var list = document.createElement("ul");
    list.className = "list-unstyled";
    list.style.margin = "0";
    var groups = data.groups || [];
    if (!groups.length) {
      list.appendChild(item(form.getAttribute("data-empty"), "text-muted tabula-search-empty"));
      list.lastChild.style.padding = "4px 12px";
    }
    groups.forEach(function (group) {
      var header = item(group.label, "dropdown-header");
      list.appendChild(header);
      group.results.forEach(function (hit) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.className = "tabula-search-hit";
        a.href = hit.url;
        a.setAttribute("role", "option");
        a.style.display = "block";
        a.style.padding = "3px 20px";
        a.style.whiteSpace = "normal";
        a.textContent = hit.label;
        if (hit.detail) {
          var small = document.createElement("small");
          small.className = "text-muted";
          small.textContent = " — " + hit.detail;
          a.appendChild(small);
        }
        li.appendChild(a);
        list.appendChild(li);
      });
      if (group.more) {
        var more = item(form.getAttribute("data-more"), "text-muted");
        more.style.padding = "0 20px";
        list.appendChild(more);
      }
    });
    var divider = document.createElement("li");
    divider.className = "divider";
    list.appendChild(divider);
    var all = document.createElement("li");
    var allLink = document.createElement("a");
    allLink.href = data.page_url;
    allLink.style.display = "block";
    allLink.style.padding = "3px 20px";
    allLink.textContent = form.getAttribute("data-all");
    all.appendChild(allLink);
    list.appendChild(all);
    box.appendChild(list);
    show();
  }

  function failed() {
    clear();
    var p = document.createElement("p");
    p.className = "text-muted";
    p.style.padding = "4px 12px";
    p.style.margin = "0";
    p.textContent = form.getAttribute("data-failed");
    box.appendChild(p);
    show();
  }

  function ask() {
    var query = input.value.replace(/\u0000/g, "").trim();
    if (query.length < MIN) { hide(); return; }
    var mine = ++sequence;
    var url = answersUrl + "?q=" + encodeURIComponent(query.slice(0, 100));
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.json();
      })
      .then(function (data) { if (mine === sequence) { render(data); } })
      .catch(function () { if (mine === sequence) { failed(); } });
  }

  function highlight(index) {
    var found = links();
    if (!found.length) { return; }
    if (active >= 0 && found[active]) { found[active].parentNode.classList.remove("active"); }
    active = (index + found.length) % found.length;
    found[active].parentNode.classList.add("active");
    found[active].scrollIntoView({block: "nearest"});
  }

  input.addEventListener("input", function () {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(ask, DELAY);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "ArrowDown") { event.preventDefault(); highlight(active + 1); }
    else if (event.key === "ArrowUp") { event.preventDefault(); highlight(active - 1); }
    else if (event.key === "Escape") { hide(); }
    else if (event.key === "Enter") {
      var found = links();
      if (active >= 0 && found[active]) { event.preventDefault(); window.location.href = found[active].href; }
      // otherwise the form submits: the full results page
    }
  });
  input.addEventListener("focus", function () { if (box.firstChild && input.value.trim().length >= MIN) { show(); } });
  document.addEventListener("click", function (event) { if (!form.contains(event.target)) { hide(); } });
  form.addEventListener("submit", function (event) {
    if (!input.value.trim()) { event.preventDefault(); }
  });
})();
