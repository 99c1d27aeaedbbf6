"""OpenAI wire format upstreams: OpenAI itself and every OpenAI-compatible server."""

import json

from providers.http import send


class OpenAIProvider:
    wire_format = "openai"
    dialects: dict = {}  # other wire formats this upstream speaks -> the adapter for each

    def __init__(self, upstream, session, *, timeout):
        self.upstream, self.session, self.timeout = upstream, session, timeout

    def open(self, payload: dict, *, stream: bool, endpoint: str = "chat/completions"):
        """POST payload (model already set) upstream; the caller reads and closes the response."""
        headers = {"Content-Type": "application/json",
                   "Accept": "text/event-stream" if stream else "application/json"}
        if self.upstream.api_key:
            headers["Authorization"] = f"Bearer {self.upstream.api_key}"
        body = json.dumps(payload, separators=(",", ":")).encode()
        return send(self.session, f"{self.upstream.base_url}/{endpoint}", body=body,
                    headers=headers, timeout=self.timeout, upstream=self.upstream)
