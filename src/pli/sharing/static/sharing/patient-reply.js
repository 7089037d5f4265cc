/* The patient's reply form. The session ends after 15 idle minutes, and a reply sent after
   it has ended is lost: writing and choosing files are activity, so while the patient does
   either, the page tells Pli so (a POST that carries nothing of what is written; nothing
   written is kept anywhere, here or on the server). Two minutes before an idle session
   would end the page says so, with a button to stay; once it has ended, sending is held
   back so that the text stays on the screen to be copied. The files are checked as soon as
   they are chosen (their number, type and size, the server's limits): on a phone, a photo
   too large was sent whole, a minute over a weak connection, only to be refused. Without
   this script the form posts as usual, and the server checks the same. */
(function () {
  "use strict";
  // The server records activity at most once a minute (touch_session): the session may
  // end up to a minute earlier than counted from the latest answer.
  var PING_EVERY = 60 * 1000;
  var WARN_BEFORE = 2 * 60 * 1000;
  // The answers by which Pli refuses a step of an ended, locked or unknown share.
  var ENDED = [403, 404, 410];

  var form, idle, notice;
  var lastAlive = Date.now(); // the page itself was activity
  var lastPing = 0;
  var ended = false;

  function endsAt() {
    return lastAlive + idle - PING_EVERY;
  }

  function hide() {
    if (notice) {
      // « Stay signed in » pressed: its button goes with the notice, and the focus would
      // fall back to the top of the page; it goes back to the text being written.
      var hadFocus = notice.contains(document.activeElement);
      notice.remove();
      notice = null;
      if (hadFocus) form.querySelector("textarea").focus();
    }
  }

  /* The warning ("ending") or the end ("ended"), above the form. role="alert": announced
     without taking the focus from the text being written. */
  function show(kind) {
    if (notice && notice.dataset.kind === kind) return notice;
    hide();
    notice = document.createElement("div");
    notice.id = "reply-session";
    notice.dataset.kind = kind;
    notice.className = (kind === "ending" ? "flash-warning" : "flash-error") + " card";
    notice.setAttribute("role", "alert");
    notice.tabIndex = -1;
    var text = document.createElement("p");
    text.textContent = {ended: form.dataset.msgEnded, closed: form.dataset.msgClosed, ending: form.dataset.msgEnding}[kind];
    notice.appendChild(text);
    if (kind === "ending") {
      var stay = document.createElement("button");
      stay.type = "button";
      stay.className = "button secondary";
      stay.textContent = form.dataset.msgStay;
      stay.addEventListener("click", function () {
        ping(function () {});
      });
      notice.appendChild(stay);
    }
    form.parentNode.insertBefore(notice, form);
    return notice;
  }

  /* Tell Pli the patient is active. ``done(true)`` when the session is alive, ``done(false)``
     when it has ended, ``done(null)`` when the server could not be reached. */
  function ping(done) {
    var sentAt = Date.now();
    lastPing = sentAt;
    var token = form.querySelector("input[name=csrfmiddlewaretoken]");
    fetch(form.dataset.aliveUrl, {
      method: "POST",
      headers: { "X-CSRFToken": token ? token.value : "" },
      credentials: "same-origin",
      redirect: "manual",
      cache: "no-store",
    }).then(
      function (response) {
        if (response.status === 204) {
          ended = false;
          lastAlive = sentAt;
          hide();
          done(true);
        } else if (response.type === "opaqueredirect" || ENDED.indexOf(response.status) !== -1) {
          // Sent to the birth date (a redirect): the idle session is over. The share has
          // ended (410), is locked (403) or gone (404): the page itself is, whatever the
          // patient's activity, and saying « 15 minutes without activity » would be untrue.
          ended = true;
          show(response.type === "opaqueredirect" ? "ended" : "closed");
          done(false);
        } else {
          // Pli could not answer (a 503 while its database restarts): says nothing of the
          // session. Try again soon, and let a reply go (the server decides then).
          unreachable();
        }
      },
      unreachable
    );

    function unreachable() {
      lastPing = sentAt - PING_EVERY + 10 * 1000; // try again at a keystroke 10 s from now
      done(null);
    }
  }

  function active() {
    if (Date.now() - lastPing >= PING_EVERY) ping(function () {});
  }

  function check() {
    if (ended) return;
    var left = endsAt() - Date.now();
    if (left <= 0) show("ended");
    else if (left <= WARN_BEFORE) show("ending");
  }

  /* The refusal of the text (« Écrivez un message ou ajoutez un fichier. », or too long)
     taken off once the patient has done something about it: typed in the box, or, for an
     empty reply, chosen a file. Left there, it still said the reply was wrong. */
  function settled(event) {
    var refused = form.dataset.textRefused;
    if (!refused) return;
    var box = document.getElementById("id_text");
    var files = document.getElementById("id_files");
    var typed = event.target === box;
    var chosen = refused === "empty" && event.target === files && files.files && files.files.length > 0;
    if (!typed && !chosen) return;
    delete form.dataset.textRefused;
    var said = document.getElementById("reply-error");
    if (said) said.remove();
    if (box) {
      box.removeAttribute("aria-invalid");
      var help = document.getElementById("id_text_helptext");
      if (help) box.setAttribute("aria-describedby", help.id);
      else box.removeAttribute("aria-describedby");
    }
  }

  function init() {
    form = document.getElementById("reply-form");
    if (!form || !window.fetch) return;
    idle = Number(form.dataset.idleSeconds) * 1000;
    if (!idle) return;
    form.addEventListener("input", active);
    form.addEventListener("change", active);
    form.addEventListener("input", settled);
    form.addEventListener("change", settled);
    // Opening the file chooser: the photos may take a while to find.
    form.addEventListener("click", active);
    // Viewing or downloading a document, while the session lasts, is activity the server
    // records too.
    document.addEventListener("click", function (event) {
      var link = event.target.closest && event.target.closest(".document-actions a");
      if (link && !ended && Date.now() < endsAt()) lastAlive = Date.now();
    });
    form.addEventListener("submit", function (event) {
      if (!ended && Date.now() < endsAt()) return;
      // Probably ended: ask first, so that a refused reply does not take the text with it.
      event.preventDefault();
      ping(function (alive) {
        if (alive === false && notice) notice.focus();  // shown by ping: ended or closed
        else form.submit();
      });
    });
    setInterval(check, 15 * 1000);
    // A phone slows the timers of a page in the background: look again on coming back.
    document.addEventListener("visibilitychange", check);
  }

  var EXTENSIONS = { "application/pdf": [".pdf"], "image/jpeg": [".jpg", ".jpeg"], "image/png": [".png"] };

  /* Whether the server may take ``file``: it looks at the first bytes, which the page cannot
     read cheaply, so only a file that neither its type nor its name says is one of ``types``
     is refused here (a phone may give no type at all). */
  function acceptable(file, types) {
    if (!file.type || types.indexOf(file.type) !== -1) return true;
    var name = file.name.toLowerCase();
    return types.some(function (type) {
      return (EXTENSIONS[type] || []).some(function (ext) {
        return name.slice(-ext.length) === ext;
      });
    });
  }

  /* What is wrong with the chosen files, in the server's words, or "". */
  function filesProblem(form, files) {
    var maxFiles = Number(form.dataset.maxFiles);
    var maxBytes = Number(form.dataset.maxFileBytes);
    var types = (form.dataset.types || "").split(",");
    if (maxFiles && files.length > maxFiles) return form.dataset.msgTooMany;
    for (var i = 0; i < files.length; i++) {
      if (!acceptable(files[i], types)) return form.dataset.msgWrongType.replace("%(name)s", files[i].name);
      if (maxBytes && files[i].size > maxBytes) return form.dataset.msgTooLarge;
    }
    return "";
  }

  function initFiles() {
    var form = document.getElementById("reply-form");
    var input = form && form.querySelector("input[type=file]");
    if (!input || !form.dataset.msgTooLarge || !window.Pli || !window.Pli.showFieldProblem) return;
    input.addEventListener("change", function () {
      window.Pli.showFieldProblem(input, filesProblem(form, input.files || []), "reply-files-error");
    });
    // Registered before the session's handler (init), which may send the form itself.
    form.addEventListener("submit", function (event) {
      var message = filesProblem(form, input.files || []);
      if (!message) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      window.Pli.showFieldProblem(input, message, "reply-files-error");
      input.focus();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    initFiles();
    init();
  });
})();
