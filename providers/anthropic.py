"""Anthropic Messages upstreams (api.anthropic.com and servers speaking the same API)."""

import json

from providers.http import read_count, send
from translation.anthropic import BETA_KEY

API_VERSION = "2023-06-01"


class AnthropicProvider:
    wire_format = "anthropic"
    dialects: dict = {}  # other wire formats this upstream speaks: none

    def __init__(self, upstream, session, *, timeout):
        self.upstream, self.session, self.timeout = upstream, session, timeout

    def open(self, payload: dict, *, stream: bool, endpoint: str = "messages"):
        """POST payload (model already set) upstream; the caller reads and closes the response."""
        headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION,
                   "Accept": "text/event-stream" if stream else "application/json"}
        if self.upstream.api_key:
            headers["x-api-key"] = self.upstream.api_key
        payload = dict(payload)
        if beta := payload.pop(BETA_KEY, None):
            headers["anthropic-beta"] = beta
        body = json.dumps(payload, separators=(",", ":")).encode()
        return send(self.session, f"{self.upstream.base_url}/{endpoint}", body=body,
                    headers=headers, timeout=self.timeout, upstream=self.upstream)

    def count_tokens(self, payload: dict) -> int:
        """Input tokens of a count_tokens body, counted by the upstream."""
        resp = self.open(payload, stream=False, endpoint="messages/count_tokens")
        return read_count(resp, "input_tokens", self.upstream)
