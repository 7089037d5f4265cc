/* The practitioner's share form: documents upload with a progress bar, and a form refused
   for another field (a mistyped mobile number, say) keeps the documents already chosen,
   instead of asking for them again. Without this script the form posts as usual. */
(function () {
  "use strict";

  function send(form, event) {
    if (!window.XMLHttpRequest || !window.FormData || !window.Pli) return;
    event.preventDefault();
    var button = document.getElementById("share-submit");
    var progress = document.getElementById("share-progress");
    var input = document.getElementById("id_documents");
    if (button) button.disabled = true;
    if (progress) progress.hidden = false;
    window.Pli.postWithProgress(form, {
      progress: function (percent) { if (progress) progress.value = percent; },
      refused: function (html) {
        if (!window.Pli.swapPart(html, "#share-page", input && input.files.length ? input : null)) return;
        init();
        // The server gave the first field in error autofocus, which a swapped page
        // ignores; the summary is the next best place.
        var target = document.querySelector("#share-form [autofocus]") || document.getElementById("share-errors");
        if (target) target.focus();
      },
      failed: function () {
        // Nothing was created: let the form post the plain way.
        if (button) button.disabled = false;
        if (progress) progress.hidden = true;
        form.dataset.plain = "1";
      },
      stopped: function () {
        if (button) button.disabled = false;
        if (progress) progress.hidden = true;
      },
    });
  }

  function init() {
    var form = document.getElementById("share-form");
    if (!form || form.dataset.ready) return;
    form.dataset.ready = "1";
    form.addEventListener("submit", function (event) {
      if (!form.dataset.plain) send(form, event);
    });
  }

  document.addEventListener("DOMContentLoaded", init);
})();
