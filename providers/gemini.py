"""Gemini Generative Language API upstreams (v1beta generateContent)."""

import json
from urllib.parse import quote

from providers.http import read_count, send


class GeminiProvider:
    wire_format = "gemini"
    dialects: dict = {}  # other wire formats this upstream speaks: none

    def __init__(self, upstream, session, *, timeout):
        self.upstream, self.session, self.timeout = upstream, session, timeout

    def open(self, payload: dict, *, stream: bool, method: str | None = None):
        """POST payload upstream; its `model` key goes into the URL, as Gemini wants.

        Streams are always asked for as SSE (`alt=sse`): a JSON array split across reads is
        needlessly hard to relay. The caller reads and closes the response.
        """
        body = dict(payload)
        model = quote(str(body.pop("model")).removeprefix("models/"), safe="-._~")
        method = method or ("streamGenerateContent?alt=sse" if stream else "generateContent")
        headers = {"Content-Type": "application/json"}
        if self.upstream.api_key:
            headers["x-goog-api-key"] = self.upstream.api_key  # never ?key=: URLs get logged
        data = json.dumps(body, separators=(",", ":")).encode()
        return send(self.session, f"{self.upstream.base_url}/models/{model}:{method}", body=data,
                    headers=headers, timeout=self.timeout, upstream=self.upstream)

    def count_tokens(self, payload: dict) -> int:
        """Total tokens of a countTokens body, counted by the upstream."""
        resp = self.open(payload, stream=False, method="countTokens")
        return read_count(resp, "totalTokens", self.upstream)
