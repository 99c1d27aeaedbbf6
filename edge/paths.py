"""Request paths as clients send them: repeated slashes are served, not redirected.

Werkzeug answers a path with `//` in it with a redirect whose body is HTML, which no API client
reads; a client that joined its base URL and a path with one slash too many (`/v1//chat/...`)
is served the route it meant instead.
"""

import re

_SLASHES = re.compile(r"/{2,}")


def init_app(app):
    """Route `//` as `/` (before routing, so no redirect is made)."""
    app.url_map.merge_slashes = False
    app.wsgi_app = MergeSlashes(app.wsgi_app)


class MergeSlashes:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if "//" in path:
            environ["PATH_INFO"] = _SLASHES.sub("/", path)
        return self.app(environ, start_response)
