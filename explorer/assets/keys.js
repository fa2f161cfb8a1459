// Keyboard shortcuts of the explorer: j/k next/previous, n next candidate, 1-5 the labels.
// Served from the package's assets folder (no CDN). Keys typed into inputs are left alone.
(function () {
  var KEYS = {j: "btn-next", ArrowRight: "btn-next", k: "btn-prev", ArrowLeft: "btn-prev", n: "btn-active",
              "1": "label-variable", "2": "label-interesting", "3": "label-artefact", "4": "label-known", "5": "label-boring"};
  document.addEventListener("keydown", function (event) {
    var tag = (event.target && event.target.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var id = KEYS[event.key];
    var button = id && document.getElementById(id);
    if (button) { event.preventDefault(); button.click(); }
  });
})();
