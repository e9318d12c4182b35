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

  // 3. No kernel runs on the static site: the explorers' Run and Cancel buttons cannot train,
  //    and the progress bar beside them shows the state of the run that stored the page. Disable
  //    the buttons, hide the bar, and say where training works.
  var NOTE = "Run trains new settings in a kernel: open this page in JupyterLab, Colab or Binder.";
  function staticControls() {
    document.querySelectorAll(".widget-hbox").forEach(function (box) {
      var buttons = Array.prototype.filter.call(box.querySelectorAll("button.widget-button"), function (b) {
        return b.textContent.trim() === "Run" || b.textContent.trim() === "Cancel";
      });
      if (!buttons.length || box.querySelector(".cnnbook-static-note")) return;
      buttons.forEach(function (b) {
        b.disabled = true;
        b.title = NOTE;
      });
      box.querySelectorAll(".widget-progress").forEach(function (bar) { bar.style.display = "none"; });
      var note = document.createElement("span");
      note.className = "cnnbook-static-note";
      note.textContent = NOTE;
      box.appendChild(note);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    staticControls();
    new MutationObserver(staticControls).observe(document.body, { childList: true, subtree: true });
  });
})();
