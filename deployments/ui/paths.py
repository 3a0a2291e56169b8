"""The web page's static files and their URL paths. Its own small module (no FastAPI, no Ray) because the auth
layer needs the list: these paths, and only these, load without an API key, so that the user can open the page
and type the key. They hold no data: everything the page shows comes from the /v1 API, with the key."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_PATH = "/ui/"

# URL path -> (file under static/, media type). Only these files are served: no directory listing, no other file.
STATIC_FILES: dict[str, tuple[str, str]] = {
    PAGE_PATH: ("index.html", "text/html; charset=utf-8"),
    "/ui/app.css": ("app.css", "text/css; charset=utf-8"),
    "/ui/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/ui/vendor/cytoscape.min.js": ("vendor/cytoscape.min.js", "text/javascript; charset=utf-8"),
}

# "/ui" only redirects to "/ui/", so that the page's relative URLs resolve under /ui/.
UI_OPEN_PATHS = frozenset({"/ui", *STATIC_FILES})
