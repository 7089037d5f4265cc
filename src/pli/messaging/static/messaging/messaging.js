/* Pli messaging: upload progress, recipient suggestions, confirmations.
   Progressive enhancement only: every form works without this file. */
(function () {
  "use strict";

  // In the page's language ("1,5 Mo" in French, "1.5 MB" in English), in powers of 1000
  // like the sizes the server writes (pli.core.sizes.file_size) and phones show.
  function formatSize(bytes) {
    var lang = document.documentElement.lang || "fr";
    var unit = "byte", value = bytes, digits = 0;
    if (bytes >= 1000 * 1000) {
      unit = "megabyte"; value = bytes / (1000 * 1000); digits = value < 100 ? 1 : 0;
    } else if (bytes >= 1000) {
      unit = "kilobyte"; value = bytes / 1000; digits = value < 100 ? 1 : 0;
    }
    try {
      return new Intl.NumberFormat(lang, {
        style: "unit", unit: unit, unitDisplay: "short", maximumFractionDigits: digits
      }).format(value);
    } catch (e) {
      return value.toFixed(digits) + " " + {byte: "B", kilobyte: "kB", megabyte: "MB"}[unit];
    }
  }

  function showFileError(form, message) {
    var list = form.querySelector("#id_attachments_error");
    var input = form.querySelector("#id_attachments");
    if (!list || !input) return;
    list.textContent = "";
    if (message) {
      var item = document.createElement("li");
      item.textContent = message;
      list.appendChild(item);
      list.hidden = false;
      // Read out as it appears: the focus stays where the user is.
      list.setAttribute("role", "alert");
      input.setAttribute("aria-invalid", "true");
    } else {
      list.hidden = true;
      input.removeAttribute("aria-invalid");
    }
  }

  function checkFiles(form) {
    var input = form.querySelector("#id_attachments");
    var listing = form.querySelector("#file-list");
    if (!input) return true;
    var files = Array.prototype.slice.call(input.files || []);
    var total = 0;
    if (listing) {
      listing.textContent = "";
      files.forEach(function (file) {
        total += file.size;
        var item = document.createElement("li");
        item.textContent = file.name + " (" + formatSize(file.size) + ")";
        listing.appendChild(item);
      });
    } else {
      files.forEach(function (file) { total += file.size; });
    }
    var maxFiles = parseInt(form.dataset.maxFiles, 10);
    var maxBytes = parseInt(form.dataset.maxBytes, 10);
    if (files.length > maxFiles) {
      showFileError(form, form.dataset.msgTooMany);
      return false;
    }
    if (total > maxBytes) {
      showFileError(form, form.dataset.msgTooLarge);
      return false;
    }
    showFileError(form, "");
    return true;
  }

  function sendWithProgress(form, event) {
    if (!window.XMLHttpRequest || !window.FormData || !window.Pli) return;
    event.preventDefault();
    if (!checkFiles(form)) return;
    var button = form.querySelector("#send-button");
    var box = form.querySelector("#upload-progress");
    var bar = form.querySelector("#upload-bar");
    var percent = form.querySelector("#upload-percent");
    var input = form.querySelector("#id_attachments");
    if (box) box.hidden = false;
    if (button) button.disabled = true;
    window.Pli.postWithProgress(form, {
      progress: function (value) {
        if (bar) bar.value = value;
        if (percent) percent.textContent = value + " %";
      },
      refused: function (html) {
        // Keep the files the user chose unless they were the problem.
        if (!window.Pli.swapPart(html, ".mail-main", input)) return;
        init(document);
        var fresh = document.getElementById("compose-form");
        if (fresh) checkFiles(fresh); // list the kept files again
        // The first field in error, read with its message; else the summary.
        var target = (fresh && fresh.querySelector("[aria-invalid=true]")) || document.getElementById("compose-errors");
        if (target) target.focus();
      },
      failed: function () {
        if (button) button.disabled = false;
        if (box) box.hidden = true;
        showFileError(form, form.dataset.msgFailed);
      },
      stopped: function () {
        if (button) button.disabled = false;
        if (box) box.hidden = true;
      },
    });
  }

  function lastToken(value) {
    var parts = value.split(/[,;]/);
    return { head: parts.slice(0, -1).join(", "), token: parts[parts.length - 1].trim() };
  }

  function suggest(form, input) {
    var url = form.dataset.directoryUrl;
    var list = document.getElementById("directory-results");
    if (!url || !list || !window.fetch) return;
    var parts = lastToken(input.value);
    if (parts.token.length < 2) return;
    var query = url + (url.indexOf("?") < 0 ? "?" : "&") + "q=" + encodeURIComponent(parts.token);
    fetch(query, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) return;
        var rows = Array.isArray(data) ? data : (data.results || []);
        list.textContent = "";
        rows.forEach(function (row) {
          if (!row.address) return;  // professionals without a Pli mailbox can't be written to
          var option = document.createElement("option");
          option.value = (parts.head ? parts.head + ", " : "") + row.address;
          var details = [row.display_name, row.profession, row.organisation, row.city].filter(Boolean).join(" · ");
          option.label = details + " <" + row.address + ">";
          list.appendChild(option);
        });
      })
      .catch(function () { /* suggestions are a convenience */ });
  }

  function init(root) {
    var form = root.getElementById ? root.getElementById("compose-form") : null;
    if (form && !form.dataset.ready) {
      form.dataset.ready = "1";
      var input = form.querySelector("#id_attachments");
      if (input) input.addEventListener("change", function () { checkFiles(form); });
      form.addEventListener("submit", function (event) { sendWithProgress(form, event); });
      ["id_to", "id_cc"].forEach(function (id) {
        var field = form.querySelector("#" + id);
        if (!field) return;
        field.setAttribute("list", "directory-results");
        var timer = null;
        field.addEventListener("input", function () {
          clearTimeout(timer);
          timer = setTimeout(function () { suggest(form, field); }, 200);
        });
      });
    }
  }

  // "Select all" in a folder's list: the boxes of the form it names; shown only with this
  // script (without it each box is ticked by hand). Reflects the boxes ticked one by one.
  function initSelectAll(root) {
    root.querySelectorAll("input[data-select-all]").forEach(function (all) {
      var formId = all.getAttribute("data-select-all");
      var boxes = Array.prototype.slice.call(
        root.querySelectorAll('input[type="checkbox"][name="message"][form="' + formId + '"]'));
      if (!boxes.length) return;
      var label = all.closest("label");
      if (label) label.hidden = false;
      var form = document.getElementById(formId);
      if (form) form.classList.add("is-enhanced");
      function reflect() {
        var ticked = boxes.filter(function (box) { return box.checked; }).length;
        all.checked = ticked === boxes.length;
        all.indeterminate = ticked > 0 && ticked < boxes.length;
        // On a phone the actions show, in a bar, once a letter is ticked (messaging.css).
        if (form) form.classList.toggle("has-ticked", ticked > 0);
        document.documentElement.classList.toggle("has-selection-bar", ticked > 0);
      }
      all.addEventListener("change", function () {
        boxes.forEach(function (box) { box.checked = all.checked; });
        reflect();
      });
      boxes.forEach(function (box) {
        box.addEventListener("change", function () {
          reflect();
          keepAboveBar(form, box.closest("li") || box);
        });
      });
      reflect();
    });
  }

  // The bar that appears on a phone must not cover the letter just ticked (nor hide it
  // while the next one is ticked): the page scrolls it back above the bar.
  function keepAboveBar(form, row) {
    var bar = form && form.querySelector(".mail-selection-actions");
    if (!bar || getComputedStyle(bar).position !== "fixed") return;
    var covered = row.getBoundingClientRect().bottom - bar.getBoundingClientRect().top;
    if (covered > 0) window.scrollBy(0, covered + 8);
  }

  // « Supprimer définitivement » in the trash's list asks first, with how many are ticked;
  // the answer goes with the form (confirmed=1). Without this script (or a browser that
  // does not say which button was pressed), the server asks on a page of its own.
  document.addEventListener("submit", function (event) {
    var form = event.target, button = event.submitter;
    if (!(form instanceof HTMLFormElement) || !button || !button.dataset.confirmOne) return;
    var ticked = Array.prototype.filter.call(
      document.querySelectorAll('input[type="checkbox"][name="message"][form="' + form.id + '"]'),
      function (box) { return box.checked; }).length;
    if (!ticked) return;  // the server says to tick some first
    var question = ticked === 1 ? button.dataset.confirmOne
      : button.dataset.confirmMany.replace("{count}", String(ticked));
    if (!window.confirm(question)) {
      event.preventDefault();
      return;
    }
    var answer = form.querySelector("input[name=confirmed]");
    if (!answer) {
      answer = document.createElement("input");
      answer.type = "hidden";
      answer.name = "confirmed";
      form.appendChild(answer);
    }
    answer.value = "1";
  });

  /* Where a letter starts: a reply is written above the quoted message (the caret at the
     top of the text, not wherever a click lands in the quote); a new letter or a forward
     starts with its recipients. Not over a form the server refused, whose first field in
     error has the focus. */
  function placeCursor() {
    var form = document.getElementById("compose-form");
    if (!form || form.querySelector("[aria-invalid=true]") || document.getElementById("compose-errors")) return;
    var reply = form.querySelector("#id_in_reply_to");
    var body = form.querySelector("#id_body");
    var to = form.querySelector("#id_to");
    if (reply && reply.value && body) {
      body.focus();
      body.setSelectionRange(0, 0);
      body.scrollTop = 0;
    } else if (to && !to.value) {
      to.focus();
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    init(document);
    initSelectAll(document);
    placeCursor();
  });
})();
