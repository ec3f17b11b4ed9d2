// chatvault web archive: small conveniences; every page works without this script.
"use strict";
document.addEventListener("keydown", function (e) {
  // "/" focuses the search box, as in Slack and GitHub.
  if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
  var t = e.target;
  if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
  var box = document.getElementById("q") || document.getElementById("quick-q");
  if (box) { e.preventDefault(); box.focus(); box.select(); }
});
document.addEventListener("DOMContentLoaded", function () {
  // Open the thread that holds the message the address points at.
  var id = decodeURIComponent(location.hash.slice(1));
  var el = id && document.getElementById(id);
  if (!el) return;
  var d = el.closest("details");
  if (d) d.open = true;
  el.scrollIntoView({ block: "center" });
});
