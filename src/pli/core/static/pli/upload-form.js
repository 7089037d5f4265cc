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
    if (keptInput && keptInput.id) {
      var placeholder = document.getElementById(keptInput.id);
      if (placeholder && !placeholder.hasAttribute("aria-invalid")) placeholder.replaceWith(keptInput);
    }
    return fresh;
  };

  /* POST ``form`` by XHR with the X-Pli-Upload header. The server answers 201 with the
     ``location`` to go to once the data is saved; any other answer is a page showing why
     not, handed to ``handlers.refused(html)``. ``handlers.progress(percent)`` follows the
     upload; ``handlers.failed()`` is called when the connection fails (nothing was saved). */
  Pli.postWithProgress = function (form, handlers) {
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-Pli-Upload", "1");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable && handlers.progress) handlers.progress(Math.round((e.loaded / e.total) * 100));
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
      handlers.refused(xhr.responseText);
    });
    xhr.addEventListener("error", function () {
      if (handlers.failed) handlers.failed();
    });
    xhr.send(new FormData(form));
  };
})();
