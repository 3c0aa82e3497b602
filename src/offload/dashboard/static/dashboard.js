// offload dashboard: refresh <main> in place every few seconds, without a full reload.
// No inline scripts (the Content-Security-Policy forbids them); the server escapes
// everything it renders, and this script only moves server-rendered nodes around.
(function () {
  "use strict";
  var body = document.body;
  var interval = parseInt(body.getAttribute("data-refresh") || "0", 10);
  var toggle = document.getElementById("auto-refresh");
  var busy = false;

  function enabled() {
    if (!interval || (toggle && !toggle.checked) || document.visibilityState === "hidden") {
      return false;
    }
    // Do not pull the page from under someone typing in a filter or opening a traceback.
    var active = document.activeElement;
    if (active && active !== body && document.getElementById("main").contains(active)) {
      return false;
    }
    return !document.querySelector("main details[open]");
  }

  function refresh() {
    if (busy || !enabled()) {
      return;
    }
    busy = true;
    fetch(window.location.href, {
      credentials: "same-origin",
      headers: { "X-Requested-With": "offload-refresh" },
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("main");
        var main = document.getElementById("main");
        if (fresh && main) {
          main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes));
          body.setAttribute("data-refreshed", String(Date.now()));
          body.classList.remove("stale");
        }
      })
      .catch(function () {
        body.classList.add("stale");
      })
      .finally(function () {
        busy = false;
      });
  }

  if (interval > 0) {
    window.setInterval(refresh, interval);
  }
})();
