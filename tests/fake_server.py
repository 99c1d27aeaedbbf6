"""What every fake upstream shares: a threaded WSGI server on a loopback port of its own, a
queue of scripts that say how to answer the next requests, and the record of what arrived."""

import threading
from collections import deque

from werkzeug.serving import make_server


class FakeServer:
    """Subclasses implement `wsgi(environ, start_response)` and append what they receive to
    `received` (under `lock`)."""

    def __init__(self):
        self.scripts = deque()
        self.received = []
        self.lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def wsgi(self, environ, start_response):
        raise NotImplementedError

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def push(self, *scripts):
        self.scripts.extend(scripts)

    @property
    def last(self):
        return self.received[-1]
