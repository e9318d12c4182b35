// ipywidgets' HTML manager (embed-amd.js) loads its icon fonts from beside the require.js
// path of its modules, "@jupyter-widgets/...", which this site does not have. Point those
// module paths at the copy the site serves, so every font comes from _static/vendor.
(function () {
  var root = document.documentElement.dataset.content_root || "./";
  var vendor = new URL(root + "_static/vendor/html-manager", document.baseURI).href;
  require.config({ paths: { "@jupyter-widgets/html-manager/dist": vendor, "@jupyter-widgets": vendor } });
})();
