/* Sending a form with files by XHR, for a progress bar, and showing a refusal without
   losing the files already chosen. Used by the compose form and the share form; both work
   without it (progressive enhancement). */
(function () {
  "use strict";
  var Pli = (window.Pli = window.Pli || {});

  /* Replace the element ``selector`` of this page with its counterpart in ``html`` (a whole
     page), putting ``keptInput`` back in place of the new page's input of the same id when
     the server did not mark that input invalid. Returns the new element, or null when the
     page had to be written whole. */
  Pli.swapPart = function (html, selector, keptInput) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.querySelector(selector);
    var current = document.querySelector(selector);
    if (!fresh || !current) {
      document.open();
      document.write(html);
      document.close();
      return null;
    }
    current.replaceWith(document.adoptNode(fresh));
    // The refused page's title starts with "Erreur :"; the page stays, so take it over.
    if (doc.title) document.title = doc.title;
    if (keptInput && keptInput.id) {
      var placeholder = document.getElementById(keptInput.id);
      if (placeholder && !placeholder.hasAttribute("aria-invalid")) placeholder.replaceWith(keptInput);
    }
    // The refused form holds what was typed: leaving it asks first.
    fresh.querySelectorAll("form[data-guard-unsaved]").forEach(function (form) {
      Pli.guardUnsaved(form);
      form.dataset.unsaved = "1";
    });
    return fresh;
  };

  function path(url) {
    return new URL(url, window.location.href).pathname;
  }

  /* A letter or a share being written is not lost by a click elsewhere: leaving the page
     (a menu link, closing the tab) asks first, as mail clients do, once something was typed
     or chosen, or when the page shows a form the server refused (what it holds was typed).
     Sending it does not ask. Forms opt in with data-guard-unsaved. */
  var guarded = [];
  Pli.guardUnsaved = function (form) {
    if (!form || form.dataset.guarded) return;
    form.dataset.guarded = "1";
    if (form.querySelector("[aria-invalid=true]")) form.dataset.unsaved = "1";
    var mark = function () { form.dataset.unsaved = "1"; };
    form.addEventListener("input", mark);
    form.addEventListener("change", mark);
    guarded.push(form);
  };
  // Last, once the form's own handlers ran: a submission they did not take over (to send
  // it by XHR, below, or to refuse a file first) leaves the page as it should.
  window.addEventListener("submit", function (event) {
    if (!event.defaultPrevented && guarded.indexOf(event.target) !== -1) event.target.dataset.sending = "1";
  });
  window.addEventListener("beforeunload", function (event) {
    var pending = guarded.some(function (form) {
      return form.isConnected && form.dataset.unsaved && !form.dataset.sending;
    });
    if (pending) {
      event.preventDefault();
      event.returnValue = ""; // older browsers show their own text; ours cannot be set
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-guard-unsaved]").forEach(Pli.guardUnsaved);
  });

  /* The session ended while the form was being filled in (the server sent the request to
     the sign-in page): nothing was saved, and the form stays as it is, files included.
     Say so above the form, with a way to sign in again beside it; the next submission
     then goes through (see freshToken). */
  function signedOut(form) {
    var id = form.id + "-signed-out";
    var box = document.getElementById(id);
    if (!box) {
      box = document.createElement("div");
      box.id = id;
      box.className = "flash-error card";
      box.setAttribute("role", "alert");
      box.tabIndex = -1;
      var text = document.createElement("p");
      text.textContent = form.dataset.msgSignedOut || "";
      var link = document.createElement("a");
      link.href = form.dataset.loginUrl || "/login/";
      link.target = "_blank";
      link.rel = "noopener";
      link.textContent = form.dataset.msgSignIn || "";
      box.appendChild(text);
      box.appendChild(link);
      form.parentNode.insertBefore(box, form);
    }
    box.focus();
  }

  /* Signing in again (in another tab) gives the browser a new CSRF token, so the one in this
     form is refused: read the new one from this page, fetched anew, but only if the same
     person signed in (data-user): someone else's session must not send what this one wrote,
     from a mailbox they share. */
  function freshToken(form, done, out) {
    var xhr = new XMLHttpRequest();
    xhr.open("GET", window.location.href);
    xhr.responseType = "document";
    xhr.addEventListener("load", function () {
      var page = xhr.responseXML;
      var token = page && page.querySelector("input[name=csrfmiddlewaretoken]");
      var same = page && page.getElementById(form.id);
      var mine = form.querySelector("input[name=csrfmiddlewaretoken]");
      if (xhr.status !== 200 || path(xhr.responseURL) !== window.location.pathname || !token || !mine ||
          !same || !form.dataset.user || same.dataset.user !== form.dataset.user) {
        out();
        return;
      }
      mine.value = token.value;
      done();
    });
    xhr.addEventListener("error", out);
    xhr.send();
  }

  /* POST ``form`` by XHR with the X-Pli-Upload header. The server answers 201 with the
     ``location`` to go to once the data is saved; any other answer is a page showing why
     not, handed to ``handlers.refused(html)``. ``handlers.progress(percent)`` follows the
     upload; ``handlers.failed()`` is called when the connection fails and
     ``handlers.stopped()`` when the session had ended (nothing was saved either way). */
  Pli.postWithProgress = function (form, handlers, retried) {
    form.dataset.sending = "1";
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-Pli-Upload", "1");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable && handlers.progress) handlers.progress(Math.round((e.loaded / e.total) * 100));
    });
    var out = function () {
      delete form.dataset.sending; // nothing was saved: still to be sent
      if (handlers.stopped) handlers.stopped();
      signedOut(form);
    };
    xhr.addEventListener("load", function () {
      if (xhr.status === 201) {
        try {
          window.location.assign(JSON.parse(xhr.responseText).location);
          return;
        } catch (err) { /* a plain reload below */ }
        window.location.reload();
        return;
      }
      if (xhr.responseURL && path(xhr.responseURL) !== path(form.action)) {
        out();
        return;
      }
      if (xhr.status === 403 && xhr.getResponseHeader("X-Pli-Csrf-Failure") && !retried) {
        freshToken(form, function () { Pli.postWithProgress(form, handlers, true); }, out);
        return;
      }
      delete form.dataset.sending;
      handlers.refused(xhr.responseText);
    });
    xhr.addEventListener("error", function () {
      delete form.dataset.sending;
      if (handlers.failed) handlers.failed();
    });
    xhr.send(new FormData(form));
  };
})();
