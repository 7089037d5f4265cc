/* Pli: the unread counts of the navigation kept current while a page stays open, and an
   inbox's « new messages » notice. Asks the server once a minute while the tab is visible;
   the server does not count these requests as activity, so a tab left open does not keep
   the session alive. Stops once the session has ended. Progressive enhancement only. */
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.getAttribute("data-activity-url");
  if (!url || !window.fetch) return;
  var EVERY_MS = 60 * 1000;
  var arrivals = document.querySelector("[data-arrivals-mailbox]");
  var stopped = false;
  var timer = null;

  function setCount(link, count) {
    var badge = link.querySelector(".unread-count");
    if (!count) {
      if (badge) {
        // The space written before the badge goes with it.
        var before = badge.previousSibling;
        if (before && before.nodeType === 3 && / $/.test(before.nodeValue)) {
          before.nodeValue = before.nodeValue.replace(/ $/, "");
        }
        badge.remove();
      }
      return;
    }
    if (!badge) {
      badge = document.createElement("span");
      badge.className = "badge unread-count";
      link.appendChild(document.createTextNode(" "));
      link.appendChild(badge);
    }
    badge.textContent = String(count);
    var said = document.createElement("span");
    said.className = "visually-hidden";
    said.textContent = " " + link.getAttribute(count === 1 ? "data-unread-one" : "data-unread-many");
    badge.appendChild(said);
  }

  function show(data) {
    var byMailbox = {};
    (data.mailboxes || []).forEach(function (entry) { byMailbox[entry.id] = entry.unread; });
    document.querySelectorAll("a[data-unread]").forEach(function (link) {
      var key = link.getAttribute("data-unread");
      var count = key === "total" ? data.unread : byMailbox[key];
      if (typeof count === "number") setCount(link, count);
    });
    if (!arrivals) return;
    var mine = byMailbox[arrivals.getAttribute("data-arrivals-mailbox")];
    if (typeof mine === "number") {
      // As the server writes the inbox's title: « (3) Boîte de réception — … ».
      var title = document.title.replace(/^\(\d+\) /, "");
      document.title = (mine ? "(" + mine + ") " : "") + title;
    }
    var arrived = data.arrived || 0;
    if (arrived > 0 && arrivals.getAttribute("data-shown") !== String(arrived)) {
      arrivals.setAttribute("data-shown", String(arrived));
      var text = arrivals.getAttribute(arrived === 1 ? "data-arrivals-one" : "data-arrivals-many");
      var line = document.createElement("p");
      line.textContent = text.replace("%(count)s", String(arrived));
      var link = document.createElement("a");
      link.href = arrivals.getAttribute("data-arrivals-url");
      link.textContent = arrivals.getAttribute("data-arrivals-show");
      line.appendChild(link);
      arrivals.textContent = "";
      arrivals.appendChild(line);
    }
  }

  function check() {
    if (stopped) return Promise.resolve();
    var query = url;
    if (arrivals) {
      query += "?mailbox=" + encodeURIComponent(arrivals.getAttribute("data-arrivals-mailbox")) +
        "&after=" + encodeURIComponent(arrivals.getAttribute("data-arrivals-after"));
    }
    return fetch(query, {credentials: "same-origin", redirect: "manual", headers: {Accept: "application/json"}})
      .then(function (response) {
        // A redirect is the sign-in page: the session has ended; nothing more to ask.
        if (response.type === "opaqueredirect" || response.status === 401 || response.status === 403) {
          stopped = true;
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (data) { if (data) show(data); })
      .catch(function () { /* offline for a moment: the next round asks again */ });
  }

  function schedule() {
    window.clearInterval(timer);
    timer = null;
    if (!stopped && !document.hidden) timer = window.setInterval(check, EVERY_MS);
  }

  document.addEventListener("visibilitychange", function () {
    // Back on the tab after a while: up to date at once, not at the next minute.
    if (!document.hidden) check();
    schedule();
  });
  schedule();
  var Pli = (window.Pli = window.Pli || {});
  Pli.checkActivity = check;
})();
