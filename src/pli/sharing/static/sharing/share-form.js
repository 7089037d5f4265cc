/* The practitioner's share form: documents upload with a progress bar, and a form refused
   for another field (a mistyped mobile number, say) keeps the documents already chosen,
   instead of asking for them again. Without this script the form posts as usual. */
(function () {
  "use strict";

  function swapForm(html, keptInput) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById("share-page");
    var current = document.getElementById("share-page");
    if (!fresh || !current) {
      document.open();
      document.write(html);
      document.close();
      return;
    }
    current.replaceWith(document.adoptNode(fresh));
    var input = document.getElementById("id_documents");
    if (input && keptInput && keptInput.files.length && !input.hasAttribute("aria-invalid")) {
      input.replaceWith(keptInput);
    }
    init();
    // The server marked the first field in error with autofocus; a swapped page has to be
    // told, and the summary is the next best place.
    var target = document.querySelector("#share-form [autofocus]") || document.getElementById("share-errors");
    if (target) target.focus();
  }

  function send(form, event) {
    if (!window.XMLHttpRequest || !window.FormData) return;
    event.preventDefault();
    var button = document.getElementById("share-submit");
    var progress = document.getElementById("share-progress");
    var input = document.getElementById("id_documents");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-Pli-Upload", "1");
    if (button) button.disabled = true;
    if (progress) progress.hidden = false;
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable && progress) progress.value = Math.round((e.loaded / e.total) * 100);
    });
    xhr.addEventListener("load", function () {
      if (xhr.status === 201) {
        try {
          window.location.assign(JSON.parse(xhr.responseText).location);
          return;
        } catch (err) { /* a plain reload below */ }
        window.location.reload();
        return;
      }
      swapForm(xhr.responseText, input);
    });
    xhr.addEventListener("error", function () {
      // The connection failed: nothing was created. Let the form post the plain way.
      if (button) button.disabled = false;
      if (progress) progress.hidden = true;
      form.dataset.plain = "1";
    });
    xhr.send(new FormData(form));
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
