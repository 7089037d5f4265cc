// Loaded only on a patient page that answers a POST: a refused birth date, code or reply,
// the "locked" or "you have left" page. The pages are no-store, so Chromium cannot show such
// an entry again from its cache: the back button from the next step led to its error page
// (ERR_CACHE_MISS, "Confirm form resubmission"), whose only way on was to post the refused
// value again. The entry is turned into its page's plain address (data-url: the same step,
// or the link itself for a step that takes only a POST), which a GET answers with wherever
// the patient now is. Without script the browser's own prompt remains.
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.getAttribute("data-url");
  if (url && window.history && window.history.replaceState) {
    window.history.replaceState(null, "", url);
  }
})();
