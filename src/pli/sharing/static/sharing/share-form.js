/* The practitioner's share form: documents upload with a progress bar, and a form refused
   for another field (a mistyped mobile number, say) keeps the documents already chosen,
   instead of asking for them again. The documents are checked as soon as they are chosen
   or ticked (their number, each one's size, their total, an empty file: the server's
   limits, in its words): a scan too large was otherwise sent whole, minutes on a practice's
   upload link, only to be refused. Without this script the form posts as usual, and the
   server checks the same. */
(function () {
  "use strict";

  /* What is wrong with the documents chosen (files, and the attachments ticked from the
     message the share starts from), in the server's words, or "". */
  function documentsProblem(form) {
    var input = document.getElementById("id_documents");
    var files = Array.prototype.slice.call((input && input.files) || []);
    var sizes = files.map(function (file) { return file.size; });
    Array.prototype.forEach.call(form.querySelectorAll("input[name=attachments]:checked"), function (box) {
      sizes.push(Number(box.dataset.size) || 0);
    });
    var limits = form.dataset;
    if (sizes.length > Number(limits.maxFiles)) return limits.msgTooMany;
    for (var i = 0; i < files.length; i++) {
      if (!files[i].size) return limits.msgEmpty.replace("%(name)s", files[i].name);
    }
    var total = 0;
    for (var j = 0; j < sizes.length; j++) {
      if (sizes[j] > Number(limits.maxFileBytes)) return limits.msgTooLarge;
      total += sizes[j];
    }
    if (total > Number(limits.maxTotalBytes)) return limits.msgTooLargeTotal;
    return "";
  }

  /* The refusal beside the documents field, as the server's (sharing/new.html). */
  function showDocumentsProblem(message) {
    var input = document.getElementById("id_documents");
    if (input) window.Pli.showFieldProblem(input, message, "id_documents_error");
  }

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
    var checks = Boolean(form.dataset.msgTooMany && window.Pli && window.Pli.showFieldProblem);
    form.addEventListener("change", function (event) {
      var target = event.target;
      if (checks && (target.id === "id_documents" || target.name === "attachments")) {
        showDocumentsProblem(documentsProblem(form));
      }
    });
    form.addEventListener("submit", function (event) {
      var problem = checks ? documentsProblem(form) : "";
      if (problem) {
        event.preventDefault();
        showDocumentsProblem(problem);
        var input = document.getElementById("id_documents");
        if (input) input.focus();
        return;
      }
      if (!form.dataset.plain) send(form, event);
    });
  }

  document.addEventListener("DOMContentLoaded", init);
})();
