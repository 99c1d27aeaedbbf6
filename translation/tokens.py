"""Token estimates for count-tokens endpoints whose model's provider cannot count natively.

The estimate is ceil(characters / 4) over every text the model would read (system prompt,
messages, tool definitions, tool calls and results), plus 4 tokens per turn and 3 for the
reply's priming, plus a flat 258 tokens per image or document (what Gemini charges for an
image up to 384 px). It is an estimate: tokenizers differ by model, usually within ~20%.
"""

import json
import math

from translation import ir

PER_TURN, PRIMING, PER_IMAGE = 4, 3, 258


def estimate_input_tokens(req: ir.ChatRequest) -> int:
    chars = sum(len(s) for s in req.system)
    chars += sum(len(t.name) + len(t.description) + len(json.dumps(t.parameters))
                 for t in req.tools)
    images = 0
    for turn in req.turns:
        for part in turn.parts:
            chars, images = _add(part, chars, images)
    return math.ceil(chars / 4) + PER_TURN * len(req.turns) + PRIMING + PER_IMAGE * images


def _add(part, chars, images):
    if isinstance(part, ir.Text):
        return chars + len(part.text), images
    if isinstance(part, ir.Image | ir.Document):
        return chars, images + 1
    if isinstance(part, ir.ToolCall):
        return chars + len(part.name) + len(part.arguments), images
    for inner in part.content:
        chars, images = _add(inner, chars, images)
    return chars, images


# ---- generous prompt estimates for credit holds, in any wire format -------------------------
HELD_PER_IMAGE = 1000  # what a hold counts for an image or document (the OpenAI estimate's figure)


def json_tokens(value, key: str = "") -> int:
    """A generous token count of the text in a JSON value: one per 3 UTF-8 bytes of every
    string, base64 payloads (`data` fields, data: URLs) counted as one image each."""
    if isinstance(value, dict):
        return sum(json_tokens(v, k) for k, v in value.items())
    if isinstance(value, list):
        return sum(json_tokens(v, key) for v in value)
    if not isinstance(value, str):
        return 0
    if key == "data" or value.startswith("data:"):
        return HELD_PER_IMAGE
    return -(-len(value.encode("utf-8", "surrogatepass")) // 3)


def usage_in_body(content: bytes, key: str, usage_from):
    """Canonical usage read from the `key` field of a whole JSON answer (None when absent)."""
    try:
        return usage_from(json.loads(content).get(key))
    except (ValueError, AttributeError):
        return None
