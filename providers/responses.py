"""OpenAI Responses wire format upstreams (`POST {base_url}/responses`).

A provider of type "responses" speaks only this format: clients of the other formats reach
it translated. An OpenAI-type provider with `responses = true` (OpenAI itself by default)
also has one of these as its Responses dialect, on the same upstream and connection pool, so
Responses clients pass straight through.
"""

from providers.http import read_count
from providers.openai import OpenAIProvider


class ResponsesProvider(OpenAIProvider):
    wire_format = "responses"
    counts_tokens = True
    defaults = {}

    def open(self, payload, *, model, stream, headers=None, endpoint="responses"):
        return super().open(payload, model=model, stream=stream, headers=headers,
                            endpoint=endpoint)

    def count_tokens(self, payload, *, model):
        resp = self.open(payload, model=model, stream=False, endpoint="responses/input_tokens")
        return read_count(resp, "input_tokens")
