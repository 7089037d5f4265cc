/* A file field's refusal shown by a page's script before anything is sent, marked up as the
   server's own (an alert beside the field, tied to it by aria-describedby), for the forms
   that check the files as soon as they are chosen (sharing/share-form.js,
   sharing/patient-reply.js). */
(function () {
  "use strict";
  var Pli = (window.Pli = window.Pli || {});

  /* Show ``message`` beside ``input`` as the paragraph ``errorId``, or clear it when
     ``message`` is "". The server's refusal there, if any, was about files no longer
     chosen: it goes. */
  Pli.showFieldProblem = function (input, message, errorId) {
    var field = input.closest(".field");
    var old = field && field.querySelector(".errorlist");
    if (old) old.remove();
    // What the field is still described by: its help, a refusal above the form that stands.
    var described = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
      return id && id !== errorId && document.getElementById(id);
    });
    if (!message) {
      if (field) field.classList.remove("has-error");
      input.removeAttribute("aria-invalid");
    } else {
      // A paragraph, not the server's list: a list cannot also be an alert.
      var box = document.createElement("p");
      box.className = "errorlist";
      box.id = errorId;
      box.setAttribute("role", "alert");
      box.textContent = message;
      input.parentNode.insertBefore(box, input);
      if (field) field.classList.add("has-error");
      input.setAttribute("aria-invalid", "true");
      described.push(errorId);
    }
    input.setAttribute("aria-describedby", described.join(" "));
  };
})();
