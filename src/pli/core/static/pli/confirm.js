// A form with data-confirm="…" asks before it is sent: deleting for good, revoking a
// patient's link, sending them a new one (the old one then stops working). One listener
// for the whole page, so forms added later (htmx) are covered too.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
})();
