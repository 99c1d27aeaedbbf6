"""Gemini's embeddings format (:embedContent, :batchEmbedContents): requests and answers.

Upstream calls always use :batchEmbedContents, at most 100 requests each (the API refuses
more), which is also all google-genai sends to the Developer API. Several parts in one content
make one vector, as on Gemini itself.
"""

import json

from errors import InvalidRequest
from translation.embeddings import EmbedAnswer, EmbedInput, EmbedRequest
from translation.gemini import camel

name = "gemini"
METHODS = ("embedContent", "batchEmbedContents")
ITEM_FIELDS = {"taskType": "task_type", "title": "title", "outputDimensionality": "dimensions"}


def request_to_ir(body: dict, method: str) -> EmbedRequest:
    """The validated client body of `method` (the model from the URL in its `model`)."""
    model = body["model"]
    if method == "embedContent":
        items = [_item(normalize_request(body), "content")]
        return EmbedRequest(model=model, inputs=items, method=method, size_param="content")
    items = [_item(normalize_request(r), f"requests[{i}].content")
             for i, r in enumerate(body["requests"])]
    return EmbedRequest(model=model, inputs=items, method=method, size_param="requests")


def normalize_request(request: dict) -> dict:
    """One EmbedContentRequest with its keys in camelCase (clients may send snake_case)."""
    return {camel(k): v for k, v in request.items()}


def _item(request: dict, param: str) -> EmbedInput:
    parts = request["content"]["parts"]
    texts = [p.get("text") for p in parts]
    text = "\n".join(texts) if all(isinstance(t, str) for t in texts) else None
    item = EmbedInput(text=text, parts=parts, param=param)
    for key, attr in ITEM_FIELDS.items():
        setattr(item, attr, request.get(key))
    return item


def passthrough_payload(body: dict, upstream_model: str, method: str) -> tuple[dict, dict]:
    """The client's body for a Gemini upstream, as it came: the model names aside."""
    body = {k: v for k, v in body.items() if k not in ("provider", "model")}
    if method == "batchEmbedContents":
        body["requests"] = [{**r, "model": f"models/{upstream_model}"}
                            for r in body["requests"]]
    return {**body, "model": upstream_model}, {"method": method}


def group_key(item: EmbedInput):
    return None  # every batch item carries its own settings


def request_from_ir(req: EmbedRequest, items: list, upstream_model: str) -> tuple[dict, dict]:
    """A :batchEmbedContents body for some of a request's inputs."""
    requests = []
    for item in items:
        if item.tokens is not None:
            raise InvalidRequest(f"'{item.param}' is a token array; only OpenAI-type providers "
                                 "embed token arrays. Send text (with LangChain's "
                                 "OpenAIEmbeddings: check_embedding_ctx_length=False).",
                                 param=item.param)
        entry = {"model": f"models/{upstream_model}",
                 "content": {"parts": item.parts or [{"text": item.text}]}}
        for key, attr in ITEM_FIELDS.items():
            if getattr(item, attr) is not None:
                entry[key] = getattr(item, attr)
        requests.append(entry)
    return {"model": upstream_model, "requests": requests}, {"method": "batchEmbedContents"}


def answer_to_ir(data, count: int, options: dict, *, decode: bool = True) -> EmbedAnswer:
    """Vectors from an :embedContent or :batchEmbedContents answer; ValueError if malformed.
    Gemini sends floats only, so there is nothing to decode either way."""
    if not isinstance(data, dict):
        raise ValueError("an embeddings answer must be an object")
    if options.get("method") == "embedContent":
        rows = [data.get("embedding")]
    else:
        rows = data.get("embeddings")
    if not isinstance(rows, list) or len(rows) != count:
        raise ValueError(f"asked for {count} embeddings, got another shape")
    vectors = []
    for row in rows:
        values = row.get("values") if isinstance(row, dict) else None
        if not isinstance(values, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise ValueError("an embedding needs a list of numbers in 'values'")
        vectors.append(values)
    meta = data.get("usageMetadata")
    tokens = meta.get("promptTokenCount") if isinstance(meta, dict) else None
    return EmbedAnswer(vectors, tokens if isinstance(tokens, int) and tokens >= 0 else None)


def relayable(content: bytes, data, req: EmbedRequest) -> bool:
    """Gemini's vectors have one encoding only: the upstream's bytes can always go as they are."""
    return True


def relay_body(content: bytes, credits) -> bytes:
    return content


def answer_from_ir(answer: EmbedAnswer, req: EmbedRequest, tokens: int, credits) -> bytes:
    """The client's answer in the shape of the method it called; usage only when counted by
    the upstream (Gemini leaves it out rather than guess)."""
    rows = [{"values": list(vector)} for vector in answer.vectors]
    body = {"embedding": rows[0]} if req.method == "embedContent" else {"embeddings": rows}
    if answer.prompt_tokens is not None:
        body["usageMetadata"] = {"promptTokenCount": tokens, "totalTokenCount": tokens}
    return json.dumps(body, separators=(",", ":")).encode()
