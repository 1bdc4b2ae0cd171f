// A record's page follows the record live (live.js): when someone changes or deletes it, a banner says who,
// with a link that shows the new values (the page is not redrawn under the reader). Who else has the record
// open shows beside it. User text only reaches the page through textContent.
(function () {
  "use strict";

  var root = document.getElementById("record-live");
  if (!root || !root.getAttribute("data-url") || !window.TabulaLive) { return; }
  var texts = JSON.parse(root.getAttribute("data-texts"));
  var banner = document.getElementById("record-live-banner");
  var text = document.getElementById("record-live-text");
  var reload = document.getElementById("record-live-reload");
  reload.href = window.location.href;

  function tell(template, by) {
    text.textContent = template.replace("%(by)s", by || "");
    banner.hidden = false;
  }

  window.TabulaLive.follow(root.getAttribute("data-url"), document.getElementById("record-live-mark"), texts, {
    rows: function (message) {
      var gone = (message.gone || []).length > 0;
      tell(gone ? texts.gone : texts.changed, message.by);
      reload.hidden = gone;
    },
    schema: function () { tell(texts.changed, ""); },
    reload: function () { tell(texts.changed, ""); }
  });
})();
