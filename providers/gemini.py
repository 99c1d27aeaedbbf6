"""Gemini Generative Language API upstreams (v1beta generateContent)."""

import json
from urllib.parse import quote

from providers import gemini_images
from providers.base import Provider
from providers.http import read_count, read_json, send


class GeminiProvider(Provider):
    wire_format = "gemini"
    counts_tokens = True
    supports_embeddings = True
    max_embedding_inputs = 100  # requests per :batchEmbedContents call (the API refuses more)
    supports_images = True  # image models (providers/gemini_images.py)
    supports_image_edits = True  # the uploads as inline parts with the instruction

    def open(self, payload, *, model, stream, headers=None, method=None):
        """The model goes into the URL, as Gemini wants (a `model` key in the body is dropped).

        Streams are always asked for as SSE (`alt=sse`): a JSON array split across reads is
        needlessly hard to relay.
        """
        body = {k: v for k, v in payload.items() if k != "model"}
        name = quote(str(model).removeprefix("models/"), safe="-._~")
        method = method or ("streamGenerateContent?alt=sse" if stream else "generateContent")
        sent = {"Content-Type": "application/json"}
        if self.upstream.api_key:
            sent["x-goog-api-key"] = self.upstream.api_key  # never ?key=: URLs get logged
        data = json.dumps(body, separators=(",", ":")).encode()
        return send(self.session, f"{self.upstream.base_url}/models/{name}:{method}", body=data,
                    headers=sent, timeout=self.timeout, upstream=self.upstream)

    def count_tokens(self, payload, *, model):
        resp = self.open(payload, model=model, stream=False, method="countTokens")
        return read_count(resp, "totalTokens")

    def embed(self, payload, *, model, method="batchEmbedContents"):
        resp = self.open(payload, model=model, stream=False, method=method)
        return read_json(resp)

    def generate_images(self, req, *, fetcher):
        return gemini_images.generate(self, req, fetcher)

    def edit_images(self, req, *, fetcher):
        return gemini_images.generate(self, req, fetcher)
