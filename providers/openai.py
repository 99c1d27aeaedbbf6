"""OpenAI wire format upstreams: OpenAI itself and every OpenAI-compatible server."""

import json

from providers.http import read_json, send


class OpenAIProvider:
    wire_format = "openai"
    supports_embeddings = True
    max_embedding_inputs = 2048  # inputs per /embeddings call

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

    def embed(self, payload: dict) -> tuple[bytes, object]:
        """POST /embeddings (model already set); the answer's bytes and its JSON."""
        resp = self.open(payload, stream=False, endpoint="embeddings")
        return read_json(resp, self.upstream)
