"""A Sphinx extension: include each inline <script> only once per page.

sphinx-thebe registers its configuration script every time Sphinx reads documents, so a
page can declare ``const THEBE_JS_URL`` twice and the browser reports a SyntaxError.
Dropping exact duplicates fixes that without touching anything else.
"""


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # an inline script may be registered with filename None or "": the same script
        filename = getattr(script, "filename", script) or ""
        key = (str(filename), tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    # In place: handlers that run later add their scripts to this same list.
    context["script_files"][:] = unique


def setup(app):
    # Early: Sphinx stops calling html-page-context handlers after the first that returns a value.
    app.connect("html-page-context", _drop_duplicate_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
