"""The internal shape every wire format maps into: requests, answers, stream events, usage.

Turns are Anthropic-like: roles are "user" and "assistant", tool results live in user turns,
the system prompt sits apart. Each format module reads its wire format into these and writes
them back out, so N formats need N modules, not N*N converters. Fields a format has no slot for
here are not carried: a request between two ends of the same format never goes through the IR.
"""

from dataclasses import dataclass, field

# Canonical stop reasons (OpenAI's words, plus stop_sequence so Anthropic clients keep it).
STOP, LENGTH, TOOL_CALLS, CONTENT_FILTER, STOP_SEQUENCE = (
    "stop", "length", "tool_calls", "content_filter", "stop_sequence")


@dataclass(frozen=True)
class Usage:
    """Canonical token counts. `input` excludes cached tokens; `output` includes reasoning."""

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    images: int = 0  # images returned (charged per image at the price's `image`)

    @property
    def total(self) -> int:
        return self.input + self.cache_read + self.cache_write + self.output

    @property
    def prompt(self) -> int:
        """The whole prompt, cached parts included (what OpenAI and Gemini report)."""
        return self.input + self.cache_read + self.cache_write


@dataclass
class Text:
    text: str


@dataclass
class Image:
    """An image given inline (base64 `data` with `mime`) or by `url`."""

    mime: str = ""
    data: str = ""
    url: str = ""


@dataclass
class Document:
    """An inline document such as a PDF (base64)."""

    mime: str
    data: str


@dataclass
class ToolCall:
    """A call the model made. `arguments` is JSON text, exactly as the model produced it."""

    id: str
    name: str
    arguments: str = "{}"
    signature: str = ""  # Gemini thoughtSignature, echoed back when the call is replayed


@dataclass
class ToolResult:
    call_id: str
    name: str = ""
    content: list = field(default_factory=list)  # Text and Image parts
    is_error: bool = False


@dataclass
class Turn:
    role: str  # "user" or "assistant"
    parts: list = field(default_factory=list)


@dataclass
class Tool:
    name: str
    description: str = ""
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass
class ToolChoice:
    mode: str = "auto"  # auto, none, required, or tool (then `name`)
    name: str = ""


@dataclass
class ChatRequest:
    model: str
    turns: list
    system: list = field(default_factory=list)  # system texts, in order
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list = field(default_factory=list)
    tools: list = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    n: int | None = None
    stream: bool = False
    include_usage: bool = False  # OpenAI clients: send the usage chunk in streams
    # JSON output: {"schema": JSON Schema or None (any JSON object), "name": optional}
    output_format: dict | None = None
    # Request fields the client's answer repeats as they were sent (a Responses object echoes
    # its instructions, tools, metadata, ...); read only by the client's own format.
    echo: dict = field(default_factory=dict)


@dataclass
class ChatResponse:
    id: str
    model: str
    parts: list  # Text, ToolCall and (images the model made) Image parts in order
    stop_reason: str = STOP
    stop_sequence: str | None = None
    usage: Usage | None = None


# ---- stream events: what every stream decoder yields and every encoder consumes ---------------
@dataclass
class Start:
    id: str
    model: str


@dataclass
class TextDelta:
    text: str


@dataclass
class ToolCallStart:
    """A new tool call; `index` counts tool calls only, from 0, within the answer."""

    index: int
    id: str
    name: str
    signature: str = ""


@dataclass
class ToolCallDelta:
    index: int
    arguments: str


@dataclass
class ImageOut:
    """An image the model made (base64 `data`), whole: Gemini image models send each in one
    chunk. Chat Completions clients get it in `delta.images`; formats without a place for
    output images leave it out."""

    mime: str
    data: str


@dataclass
class Finish:
    stop_reason: str
    stop_sequence: str | None = None


@dataclass
class UsageUpdate:
    """Usage so far; running totals, so the last one wins."""

    usage: Usage


@dataclass
class End:
    """The upstream stream completed properly."""


@dataclass
class Failure:
    """The upstream reported an error inside the stream."""

    error: object  # a GatewayError
