"""OpenAI wire format upstreams: OpenAI itself and every OpenAI-compatible server."""

import json

from providers import openai_images
from providers.base import Provider
from providers.http import read_json, send


class OpenAIProvider(Provider):
    wire_format = "openai"
    # OpenAI itself wants max_completion_tokens (its reasoning models reject max_tokens); many
    # OpenAI-compatible servers know only max_tokens: their presets and the alias say so.
    defaults = {"output_limit_field": "max_completion_tokens"}
    supports_embeddings = True
    max_embedding_inputs = 2048  # inputs per /embeddings call
    supports_images = True  # POST /images/generations (providers/openai_images.py)
    supports_image_edits = True  # POST /images/edits

    def open(self, payload, *, model, stream, headers=None, endpoint="chat/completions"):
        sent = {"Content-Type": "application/json",
                "Accept": "text/event-stream" if stream else "application/json"}
        if self.upstream.api_key:
            sent["Authorization"] = f"Bearer {self.upstream.api_key}"
        body = json.dumps({**payload, "model": model}, separators=(",", ":")).encode()
        return send(self.session, f"{self.upstream.base_url}/{endpoint}", body=body,
                    headers=sent, timeout=self.timeout, upstream=self.upstream)

    def embed(self, payload, *, model):
        resp = self.open(payload, model=model, stream=False, endpoint="embeddings")
        return read_json(resp)

    def generate_images(self, req, *, fetcher):
        return openai_images.generate(self, req, fetcher)

    def edit_images(self, req, *, fetcher):
        return openai_images.edit(self, req, fetcher)
