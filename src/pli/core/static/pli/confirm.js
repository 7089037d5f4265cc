// A form with data-confirm="…" asks before it is sent: deleting for good, revoking a
// patient's link, sending them a new one (the old one then stops working). One listener
// for the whole page, so forms added later (htmx) are covered too. The answer goes with the
// form (confirmed=1): without this script, the server asks on a page of its own instead.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
    if (!window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
      return;
    }
    if (!form.querySelector("input[name=confirmed]")) {
      var answer = document.createElement("input");
      answer.type = "hidden";
      answer.name = "confirmed";
      answer.value = "1";
      form.appendChild(answer);
    }
  }, true);
})();
