// Live updates: the server sends an event when jobs change or running
// tasks progress; this refetches the page's live fragment and swaps it in.
// No polling of its own; EventSource reconnects by itself.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var url = live && live.getAttribute("data-fragment");
  if (!url || !window.EventSource) return;
  var busy = false, again = false;
  function editing() {
    var a = document.activeElement;
    return a && live.contains(a) && a.tagName === "INPUT";
  }
  function refresh() {
    if (busy || editing()) { again = true; return; }
    busy = true;
    fetch(url, { credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { location.reload(); throw new Error("login"); }
        if (!r.ok) throw new Error(String(r.status));
        return r.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        live.setAttribute("data-updates", String(Number(live.getAttribute("data-updates")) + 1));
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  new EventSource("/events").onmessage = refresh;
  live.addEventListener("focusout", function () {
    if (again) { again = false; setTimeout(refresh, 0); }
  });
})();
