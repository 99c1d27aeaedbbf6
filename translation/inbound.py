"""What a client request is, beside its body: built once by the view, read by every layer below."""

from dataclasses import dataclass, field

SSE, JSON_ARRAY = "sse", "json"  # how a stream goes back to the client


@dataclass(frozen=True)
class Inbound:
    """One client request. The body is exactly as the client sent it (after key normalization
    where the format allows two spellings) and is never mutated; whatever the gateway knows
    about the request apart from the body travels here, never inside it."""

    format: str  # the client's wire format: a name in translation.registry.FORMATS
    body: dict
    model: str
    stream: bool = False
    framing: str = SSE  # a stream as Server-Sent Events, or (Gemini without alt=sse) a JSON array
    provider: str | None = None  # a provider the client forced
    headers: dict = field(default_factory=dict)  # forwarded to an upstream of the same format
