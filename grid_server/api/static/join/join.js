// The invitation code is in the link's fragment (after #), which the browser never sends:
// read it here, normalise it as the grid does (upper case, groups of four) and show the link.
(function () {
  "use strict";
  var raw = decodeURIComponent(location.hash.slice(1)).replace(/[\s-]/g, "").toUpperCase();
  var code = (raw.match(/.{1,4}/g) || []).join("-");
  var links = document.querySelectorAll("nav a[hreflang]");
  for (var i = 0; i < links.length; i++) links[i].href += location.hash;
  if (!/^[A-Z2-7]{1,4}(-[A-Z2-7]{1,4})*$/.test(code)) {
    document.getElementById("no-code").hidden = false;
    document.getElementById("steps").hidden = true;
    return;
  }
  var link = location.origin + location.pathname.replace(/\/+$/, "") + "#" + code;
  var box = document.getElementById("invitation");
  var button = document.getElementById("copy");
  var status = document.getElementById("copy-status");
  box.value = link;
  document.getElementById("with-code").hidden = false;
  document.getElementById("from-address-bar").hidden = true;
  box.addEventListener("focus", function () { box.select(); });
  button.addEventListener("click", function () {
    box.focus();
    box.select();
    var done = function () { status.textContent = button.dataset.copied; };
    var failed = function () { status.textContent = button.dataset.failed; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(link).then(done, failed);
    } else {
      failed();
    }
  });
})();
