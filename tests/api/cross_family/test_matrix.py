"""Every client format against every provider wire format, streaming and not: a tool-call
round trip with two parallel calls, checked on both sides of the gateway."""

import pytest

from tests.api.sdk_clients import CLIENTS, QUESTION
from tests.conftest import every_provider_type
from tests.fake_upstream import Script
from translation.gemini import SIGNATURE_PLACEHOLDER

MODELS = {"openai": "gpt-test", "anthropic": "claude-test", "gemini": "gemini-test"}
CALLS = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": every_provider_type(upstream)}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", list(MODELS))
@pytest.mark.parametrize("client_format", list(CLIENTS))
def test_tool_call_round_trip(gateway, api_key, upstream, client_format, provider, stream):
    client, model = CLIENTS[client_format](gateway, api_key), MODELS[provider]
    upstream.push(Script(tool_calls=CALLS), Script(content="Paris 18C, Rome 21C"))

    calls = client.ask(model, stream)
    assert [(name, args) for _, name, args in calls] == CALLS
    first = sent_conversation(provider, upstream.received[-1].json)
    assert first["tools"] == ["get_weather"]
    assert first["system"] == "Answer briefly." and first["user_texts"] == [QUESTION]

    final = client.answer(model, stream, ["18C", "21C"])
    assert final == "Paris 18C, Rome 21C"
    second = sent_conversation(provider, upstream.received[-1].json)
    assert [(name, args) for _, name, args in second["calls"]] == CALLS
    # each result went back with the id (and name) of the call it answers
    by_id = {call_id: args["city"] for call_id, _, args in second["calls"]}
    assert {by_id[call_id]: text for call_id, text in second["results"]} == {
        "Paris": "18C", "Rome": "21C"}
    assert len(upstream.received) == 2
    if provider == "gemini":  # Gemini 3 wants each step's thoughtSignature back
        model_turn = next(c for c in upstream.last.json["contents"] if c.get("role") == "model")
        signatures = [p.get("thoughtSignature") for p in model_turn["parts"]
                      if "functionCall" in p]
        assert signatures == (["sig0", "sig1"] if client_format == "gemini"
                              else [SIGNATURE_PLACEHOLDER, None])


def sent_conversation(provider: str, body: dict) -> dict:
    """What the fake provider was sent, in one shape: system, user texts, calls, results."""
    return {"openai": _openai, "anthropic": _anthropic, "gemini": _gemini}[provider](body)


def _openai(body):
    import json

    messages = body["messages"]
    texts = [p["text"] if isinstance(p, dict) else p for m in messages if m["role"] == "user"
             for p in (m["content"] if isinstance(m["content"], list) else [m["content"]])]
    return {"system": "\n".join(m["content"] for m in messages if m["role"] == "system"),
            "user_texts": texts,
            "tools": [t["function"]["name"] for t in body.get("tools", [])],
            "calls": [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                      for m in messages for c in m.get("tool_calls") or []],
            "results": [(m["tool_call_id"], m["content"]) for m in messages
                        if m["role"] == "tool"]}


def _anthropic(body):
    blocks = [(m["role"], b) for m in body["messages"]
              for b in (m["content"] if isinstance(m["content"], list)
                        else [{"type": "text", "text": m["content"]}])]
    system = body.get("system")
    return {"system": system if isinstance(system, str) else system[0]["text"],
            "user_texts": [b["text"] for r, b in blocks if r == "user" and b["type"] == "text"],
            "tools": [t["name"] for t in body.get("tools", [])],
            "calls": [(b["id"], b["name"], b["input"]) for _, b in blocks
                      if b["type"] == "tool_use"],
            "results": [(b["tool_use_id"], _result_text(b["content"])) for _, b in blocks
                        if b["type"] == "tool_result"]}


def _result_text(content):
    return content if isinstance(content, str) else "".join(c["text"] for c in content)


def _gemini(body):
    parts = [(c.get("role", "user"), p) for c in body["contents"] for p in c["parts"]]
    calls = [p["functionCall"] for _, p in parts if "functionCall" in p]
    responses = [p["functionResponse"] for _, p in parts if "functionResponse" in p]
    # Gemini may leave ids out: then results pair with calls by order (and name)
    ids = [c.get("id") or f"#{i}" for i, c in enumerate(calls)]
    for response in responses:
        assert response["name"] == "get_weather"
    return {"system": body["systemInstruction"]["parts"][0]["text"],
            "user_texts": [p["text"] for r, p in parts if r == "user" and "text" in p],
            "tools": [d["name"] for t in body.get("tools", [])
                      for d in t.get("functionDeclarations", [])],
            "calls": [(i, c["name"], c["args"]) for i, c in zip(ids, calls, strict=True)],
            "results": [(r.get("id") or f"#{i}", r["response"]["output"])
                        for i, r in enumerate(responses)]}
