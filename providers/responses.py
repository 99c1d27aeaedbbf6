"""OpenAI Responses wire format upstreams (`POST {base_url}/responses`).

A provider of type "responses" speaks only this format: clients of the other formats reach
it translated. An OpenAI-type provider with `responses = true` (OpenAI itself by default)
also has one of these as its Responses dialect, so Responses clients pass straight through.
"""

from providers.http import read_count
from providers.openai import OpenAIProvider


class ResponsesProvider(OpenAIProvider):
    wire_format = "responses"

    def open(self, payload: dict, *, stream: bool, endpoint: str = "responses"):
        """POST payload (model already set) upstream; the caller reads and closes the response."""
        return super().open(payload, stream=stream, endpoint=endpoint)

    def count_tokens(self, payload: dict) -> int:
        """Input tokens of a Responses body, counted by the upstream."""
        resp = self.open(payload, stream=False, endpoint="responses/input_tokens")
        return read_count(resp, "input_tokens", self.upstream)
