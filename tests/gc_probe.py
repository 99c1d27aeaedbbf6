"""A WSGI app for tests of the worker itself: it answers with what the worker made of the cyclic
garbage collector. LOADED is made when the worker loads the app; the collector sees it only if
the worker did not freeze what loading made."""

import gc
import json

LOADED = [object()]


def app(environ, start_response):
    body = json.dumps({
        "threshold": gc.get_threshold(),
        "frozen": gc.get_freeze_count(),
        "loaded_seen": any(o is LOADED for o in gc.get_objects()),
        "made_now_seen": (lambda made: any(o is made for o in gc.get_objects()))([object()]),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
