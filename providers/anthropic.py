"""Anthropic Messages upstreams (api.anthropic.com and servers speaking the same API)."""

import json

from providers.base import Provider
from providers.http import read_count, send

API_VERSION = "2023-06-01"
FORWARDED = ("anthropic-beta",)  # client headers an Anthropic upstream gets as they came


class AnthropicProvider(Provider):
    wire_format = "anthropic"
    counts_tokens = True

    def open(self, payload, *, model, stream, headers=None, endpoint="messages"):
        sent = {"Content-Type": "application/json", "anthropic-version": API_VERSION,
                "Accept": "text/event-stream" if stream else "application/json"}
        if self.upstream.api_key:
            sent["x-api-key"] = self.upstream.api_key
        for name in FORWARDED:
            if (headers or {}).get(name):
                sent[name] = headers[name]  # features the client opted into
        body = json.dumps({**payload, "model": model}, separators=(",", ":")).encode()
        return send(self.session, f"{self.upstream.base_url}/{endpoint}", body=body,
                    headers=sent, timeout=self.timeout, upstream=self.upstream)

    def count_tokens(self, payload, *, model):
        resp = self.open(payload, model=model, stream=False, endpoint="messages/count_tokens")
        return read_count(resp, "input_tokens")
