// The console's live parts. An element with data-live-src listens to the console's own
// server-sent events and inserts the HTML fragments they carry: data-live-mode "prepend"
// adds them at its top (new breaches), "replace" swaps its content (propagation). Every
// page reads the same without this script; it only saves a reload.
(function () {
  "use strict";

  function fragment(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    return template.content;
  }

  function counted(element) {
    // A breach counter beside the table, when the page has one, keeps up too.
    var total = document.getElementById("breach-total");
    if (total) {
      total.textContent = String(Number(total.textContent) + 1);
    }
    var empty = document.getElementById("no-breaches");
    if (empty) {
      empty.remove();
    }
    element.dispatchEvent(new CustomEvent("live:added", { bubbles: true }));
  }

  function listen(element) {
    var source = new EventSource(element.getAttribute("data-live-src"));
    var name = element.getAttribute("data-live-event") || "message";
    var mode = element.getAttribute("data-live-mode") || "replace";
    source.addEventListener(name, function (event) {
      if (mode === "prepend") {
        element.insertBefore(fragment(event.data), element.firstChild);
        counted(element);
      } else {
        element.replaceChildren(fragment(event.data));
      }
    });
    // The stream says when there is nothing more to wait for (propagation complete).
    source.addEventListener("end", function () {
      source.close();
    });
    window.addEventListener("pagehide", function () {
      source.close();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-src]").forEach(listen);
  });
})();
