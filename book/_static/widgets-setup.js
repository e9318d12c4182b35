// Loaded between require.js and ipywidgets' HTML manager (embed-amd.js); two fixes for it.
(function () {
  // 1. The manager fetches its icon fonts from beside the require.js path of its modules,
  //    "@jupyter-widgets/...", which this site lacks: point those paths at the copy it serves.
  var root = document.documentElement.dataset.content_root || "./";
  var vendor = new URL(root + "_static/vendor/html-manager", document.baseURI).href;
  require.config({ paths: { "@jupyter-widgets/html-manager/dist": vendor, "@jupyter-widgets": vendor } });

  // 2. It typesets widget labels with MathJax 2's MathJax.Hub.Queue; the site runs MathJax 3,
  //    which has no Hub. Before the widgets render, translate that call to MathJax 3.
  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (mathjax && !mathjax.Hub) {
      mathjax.Hub = {
        Queue: function (job) {
          var element = job && job[2];
          if (element && window.MathJax.typesetPromise) {
            window.MathJax.typesetPromise([element]).catch(function () {});
          }
        },
      };
    }
  });
})();
