/* irbot timeline pages: show each UTC time also in the viewer's local time.
   UTC stays the record (it is what the page and the exports print); this only adds a
   <span class="local"> after every <time datetime="..."> element. No inline script is
   needed, so the pages keep a strict Content-Security-Policy (script-src 'self'). */
(function () {
  "use strict";

  function formatter() {
    try {
      return new Intl.DateTimeFormat(undefined, {
        year: "numeric",
        month: "2-digit",
        day: "2-digit",
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit",
        hourCycle: "h23",
        timeZoneName: "short",
      });
    } catch (err) {
      return null;
    }
  }

  function fill() {
    var fmt = formatter();
    if (fmt === null) {
      return;
    }
    var zone = fmt.resolvedOptions().timeZone || "local";
    var nodes = document.querySelectorAll("time[datetime]");
    for (var i = 0; i < nodes.length; i += 1) {
      var node = nodes[i];
      var at = new Date(node.getAttribute("datetime"));
      if (isNaN(at.getTime())) {
        continue;
      }
      var local = document.createElement("span");
      local.className = "local";
      local.title = "your local time (" + zone + ")";
      local.textContent = fmt.format(at);
      node.parentNode.insertBefore(local, node.nextSibling);
    }
    document.documentElement.setAttribute("data-local-times", String(nodes.length));
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", fill);
  } else {
    fill();
  }
})();
