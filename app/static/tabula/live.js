// Following a table live (views/live.py): one EventSource per page. The browser reconnects by itself and
// sends the last event's id, so the server catches the page up on what it missed (or says "reload"). While
// the connection is down the page shows a quiet "reconnecting" mark; who else has the table open shows
// next to it. User text only reaches the page through textContent.
(function () {
  "use strict";

  // url: the stream's address; mark: the element for "reconnecting" and presence; texts: {reconnecting,
  // alsoHere}; on: {rows, gone, schema, reload} handlers.
  function follow(url, mark, texts, on) {
    var source = null;
    var people = [];
    var down = false;
    var lastId = "";
    var downTimer = null;
    var retryMs = 5000;
    var closed = false;  // closed by the page: no reconnect scheduled before then may reopen it

    function show() {
      if (!mark) { return; }
      mark.textContent = "";
      if (down) {
        var waiting = document.createElement("span");
        waiting.className = "tabula-live-down";
        waiting.textContent = texts.reconnecting;
        mark.appendChild(waiting);
      }
      if (people.length) {
        var here = document.createElement("span");
        here.className = "tabula-live-people";
        var names = people.map(function (p) { return p.name; });
        here.textContent = texts.alsoHere.replace("%(names)s", names.join(", "));
        here.title = names.join("\n");
        mark.appendChild(here);
      }
      mark.hidden = !down && !people.length;
    }

    function handler(name) {
      return function (event) {
        var body = {};
        if (event.lastEventId) { lastId = event.lastEventId; }
        try { body = JSON.parse(event.data || "{}"); } catch (e) { return; }
        if (on[name]) { on[name](body, event.lastEventId); }
      };
    }

    function open() {
      if (closed) { return; }
      // A new EventSource starts afresh: tell the server the last event seen, as a reconnect would.
      var address = new URL(url, window.location.href);
      if (lastId) { address.searchParams.set("since", lastId); }
      source = new EventSource(address.toString());
      source.addEventListener("open", function () {
        retryMs = 5000;
        clearTimeout(downTimer);
        downTimer = null;
        down = false;
        show();
      });
      source.addEventListener("error", function () {
        // EventSource retries by itself while the server is away (CONNECTING); a refusal (CLOSED) does not.
        // Refused (the server restarting behind a proxy, signed out): try again, less and less often.
        if (source.readyState === EventSource.CLOSED) {
          setTimeout(open, retryMs);
          retryMs = Math.min(retryMs * 2, 60000);
        }
        // The server ends each stream after a while and the browser reconnects at once: say "reconnecting"
        // only when it takes longer than that.
        if (!downTimer) { downTimer = setTimeout(function () { down = true; show(); }, 3000); }
      });
      source.addEventListener("rows", handler("rows"));
      source.addEventListener("schema", handler("schema"));
      source.addEventListener("reload", handler("reload"));
      source.addEventListener("presence", function (event) {
        try { people = JSON.parse(event.data).people || []; } catch (e) { people = []; }
        show();
      });
    }

    function close() {
      closed = true;
      if (source) { source.close(); }
    }

    open();
    window.addEventListener("pagehide", close);
    return {close: close};
  }

  window.TabulaLive = {follow: follow};
})();
