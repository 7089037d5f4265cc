/* Pli: the unread counts of the navigation kept current while a page stays open, an
   inbox's « new messages » notice, and a warning two minutes before the session ends for
   want of activity, with « Stay signed in » (WCAG 2.2.1). Asks the server once a minute while
   the tab is visible; the server does not count these requests as activity, so a tab left
   open does not keep the session alive. Typing in a page does (a person is there): at most
   once every five minutes (a third of the idle time when that is shorter). Once the session
   has ended the page says so and goes on asking: signed in again in another tab, the page
   takes up the new session and the notice goes. Progressive enhancement only. */
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.getAttribute("data-activity-url");
  if (!url || !window.fetch) return;
  var EVERY_MS = 60 * 1000;
  var WARN_MS = 2 * 60 * 1000;
  var TYPING_MS = 5 * 60 * 1000;
  var arrivals = document.querySelector("[data-arrivals-mailbox]");
  var warning = document.querySelector("[data-session-warning]");
  var stayUrl = script.getAttribute("data-stay-url");
  var isEnded = false;
  var timer = null;
  var warnTimer = null;
  var endTimer = null;
  var warningShown = "";
  var lastStay = Date.now();
  var idleMs = warning ? Number(warning.getAttribute("data-idle-seconds")) * 1000 : 0;
  // With a short idle time (3 minutes), five minutes of typing would let it end mid-sentence.
  var typingMs = idleMs ? Math.min(TYPING_MS, idleMs / 3) : TYPING_MS;
  // Where the person was, to go back to once « Stay signed in » has gone with the warning.
  var lastFocus = null;

  function say(state, text, button) {
    if (!warning || warningShown === state) return;
    var hadFocus = warning.contains(document.activeElement);
    warningShown = state;
    warning.textContent = "";
    // Room below the page's last field and button, which the warning would cover.
    document.documentElement.classList.toggle("has-session-warning", Boolean(state));
    if (!state) {
      if (hadFocus && lastFocus && document.contains(lastFocus)) lastFocus.focus({preventScroll: true});
      return;
    }
    var line = document.createElement("p");
    line.textContent = text;
    warning.appendChild(line);
    if (button) warning.appendChild(button);
  }

  function stayButton() {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "button";
    button.textContent = warning.getAttribute("data-stay");
    button.addEventListener("click", stay);
    return button;
  }

  function ended() {
    isEnded = true;
    window.clearTimeout(warnTimer);
    window.clearTimeout(endTimer);
    if (!warning) return;
    var link = document.createElement("a");
    link.className = "button";
    // In a new tab: what is written on this page stays, to be sent once signed in again.
    link.target = "_blank";
    link.rel = "noopener";
    // Back here once signed in. Built here, not by the server: a page's address is not
    // written into the page (an error page would echo a link's secret token).
    link.href = warning.getAttribute("data-sign-in-url") + "?next=" +
      encodeURIComponent(window.location.pathname + window.location.search);
    link.textContent = warning.getAttribute("data-sign-in");
    say("ended", warning.getAttribute("data-ended"), link);
  }

  // Plans the warning and the check at the end from the server's count of seconds left.
  function planEnd(secondsLeft, extendable) {
    isEnded = false;
    if (!warning) return;
    window.clearTimeout(warnTimer);
    window.clearTimeout(endTimer);
    var left = secondsLeft * 1000;
    if (left <= WARN_MS) {
      if (extendable) say("soon", warning.getAttribute("data-soon"), stayButton());
      else say("limit", warning.getAttribute("data-limit"), null);
    } else {
      say("", "", null);
      // Asked again then: another tab may have kept the session alive meanwhile.
      warnTimer = window.setTimeout(check, left - WARN_MS);
    }
    endTimer = window.setTimeout(check, left + 1000);
  }

  function stay() {
    if (isEnded || !stayUrl) return Promise.resolve();
    lastStay = Date.now();
    var token = document.querySelector("input[name=csrfmiddlewaretoken]");
    return fetch(stayUrl, {
      method: "POST", credentials: "same-origin", redirect: "manual",
      headers: {"X-CSRFToken": token ? token.value : ""}
    })
      .then(function (response) {
        if (response.type === "opaqueredirect") ended();
        else return check();
      })
      .catch(function () { /* offline for a moment: the warning stays */ });
  }

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
    if (data.session) planEnd(data.session.ends_in, data.session.extendable);
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
      line.textContent = text.replace("%(count)s", String(arrived)) + " ";
      var link = document.createElement("a");
      link.href = arrivals.getAttribute("data-arrivals-url");
      link.textContent = arrivals.getAttribute("data-arrivals-show");
      line.appendChild(link);
      arrivals.textContent = "";
      arrivals.appendChild(line);
    }
  }

  function check() {
    var query = url;
    if (arrivals) {
      query += "?mailbox=" + encodeURIComponent(arrivals.getAttribute("data-arrivals-mailbox")) +
        "&after=" + encodeURIComponent(arrivals.getAttribute("data-arrivals-after"));
    }
    return fetch(query, {credentials: "same-origin", redirect: "manual", headers: {Accept: "application/json"}})
      .then(function (response) {
        // A redirect is the sign-in page: the session has ended (asked again at each round:
        // a sign-in in another tab brings it back).
        if (response.type === "opaqueredirect" || response.status === 401 || response.status === 403) {
          ended();
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
    if (!document.hidden) timer = window.setInterval(check, EVERY_MS);
  }

  document.addEventListener("visibilitychange", function () {
    // Back on the tab after a while: up to date at once, not at the next minute.
    if (!document.hidden) check();
    schedule();
  });
  document.addEventListener("input", function () {
    if (!isEnded && Date.now() - lastStay > typingMs) stay();
  }, true);
  document.addEventListener("focusin", function (event) {
    if (!warning || !warning.contains(event.target)) lastFocus = event.target;
  });
  schedule();
  if (warning) {
    // The page was just made: the session was saved with it.
    planEnd(Number(warning.getAttribute("data-ends-in")), warning.getAttribute("data-extendable") === "1");
  }
  var Pli = (window.Pli = window.Pli || {});
  Pli.checkActivity = check;
  Pli.staySignedIn = stay;
})();
