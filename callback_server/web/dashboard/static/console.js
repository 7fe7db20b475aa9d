// The ops console's one script (served from here: the CSP forbids inline script).
// A page whose <body data-refresh="N"> is N > 0 fetches its own URL (query string, so its
// filters, included) every N seconds and swaps in the new <main>, keeping open <details>,
// ticked boxes and what is being typed. While a box is ticked or a field has focus it waits.
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (!seconds || !window.fetch || !window.DOMParser) { return; }
  var label = document.getElementById("refresh-state");

  function busy() {
    var active = document.activeElement;
    if (active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) { return true; }
    return document.querySelector("main input[type=checkbox]:checked") !== null;
  }

  function openDetails(root) {
    var open = {};
    root.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
    return open;
  }

  function refresh() {
    if (busy()) { schedule(); return; }
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        var live = document.getElementById("live");
        if (!fresh || !live || busy()) { return; }
        var open = openDetails(live);
        live.replaceChildren.apply(live, Array.prototype.slice.call(fresh.childNodes));
        live.querySelectorAll("details[id]").forEach(function (d) {
          if (Object.prototype.hasOwnProperty.call(open, d.id)) { d.open = open[d.id]; }
        });
        document.body.setAttribute("data-refreshed", String(Date.now()));
        if (label) { label.textContent = "refreshes every " + seconds + " s (last " + new Date().toLocaleTimeString() + ")"; }
      })
      .catch(function (error) {
        if (label) { label.textContent = "refresh failed (" + error.message + "), retrying"; }
      })
      .then(schedule);
  }

  var timer = null;
  function schedule() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(refresh, seconds * 1000);
  }
  schedule();
})();
