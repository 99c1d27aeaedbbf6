"""Stored responses: previous_response_id across providers, retrieve, input items, delete,
per-user isolation, store: false, retention and the sweep, input token counts."""

import json
import time
from datetime import timedelta

import openai
import pytest
from sqlalchemy import func, select, update

from extensions import db
from models import StoredResponse, utcnow
from tests.api.responses.conftest import sent
from tests.conftest import make_user
from tests.fake_upstream import Script


def test_previous_response_id_across_providers(sdk, upstream):
    upstream.push(Script(content="Paris."), Script(content="About 2 million."))
    first = sdk.responses.create(model="chat-test", input="Capital of France?",
                                 instructions="Be brief.")
    second = sdk.responses.create(model="claude-test", input="How many people live there?",
                                  previous_response_id=first.id)
    assert second.output_text == "About 2 million."
    assert second.previous_response_id == first.id
    turns = [(m["role"], b["text"]) for m in upstream.last.json["messages"]
             for b in m["content"]]
    assert turns == [("user", "Capital of France?"), ("assistant", "Paris."),
                     ("user", "How many people live there?")]
    assert "system" not in upstream.last.json  # instructions are not carried over

    # a third turn on a passthrough upstream gets the whole history, not the id
    third = sdk.responses.create(model="gpt-test", input="And Rome?",
                                 previous_response_id=second.id)
    sent_body = upstream.last.json
    assert "previous_response_id" not in sent_body
    texts = sent("gpt-test", sent_body)
    assert texts["user_texts"] == ["Capital of France?", "How many people live there?",
                                   "And Rome?"]
    assert texts["assistant_texts"] == ["Paris.", "About 2 million."]
    assert all("id" not in item for item in sent_body["input"])
    assert sdk.responses.retrieve(third.id).previous_response_id == second.id


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_previous_response_id_after_a_failover(sdk, upstream, stream):
    upstream.push(Script(content="Paris."), Script(status=503), Script(content="Lyon."))
    first = sdk.responses.create(model="fail-test", input="Capital of France?")
    assert upstream.last.path == "/v1/chat/completions"
    kwargs = {"model": "fail-test", "input": "Second city?", "previous_response_id": first.id}
    if stream:
        with sdk.responses.stream(**kwargs) as events:
            second = events.get_final_response()
    else:
        second = sdk.responses.create(**kwargs)
    assert second.output_text == "Lyon."
    assert [r.path for r in upstream.received[-2:]] == ["/v1/chat/completions", "/v1/messages"]
    turns = [(m["role"], b["text"]) for m in upstream.last.json["messages"]
             for b in m["content"]]
    assert turns == [("user", "Capital of France?"), ("assistant", "Paris."),
                     ("user", "Second city?")]
    assert sdk.responses.retrieve(second.id).previous_response_id == first.id


def test_history_starts_after_a_deleted_turn(sdk, upstream):
    ids = []
    for word in ("one", "two", "three"):
        ids.append(sdk.responses.create(model="chat-test", input=word,
                                        previous_response_id=ids[-1] if ids else None).id)
    sdk.responses.delete(ids[0])
    sdk.responses.create(model="chat-test", input="four", previous_response_id=ids[-1])
    sent_texts = [m["content"] if isinstance(m["content"], str) else m["content"][0]["text"]
                  for m in upstream.last.json["messages"]]
    assert sent_texts == ["two", "echo: two", "three", "echo: three", "four"]


def test_function_calls_carry_over_turns(sdk, upstream):
    upstream.push(Script(tool_calls=[("get_weather", {"city": "Paris"})]),
                  Script(content="18C in Paris"))
    tools = [{"type": "function", "name": "get_weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    first = sdk.responses.create(model="gemini-test", input="Weather in Paris?", tools=tools)
    call = first.output[0]
    second = sdk.responses.create(model="chat-test", tools=tools, previous_response_id=first.id,
                                  input=[{"type": "function_call_output",
                                          "call_id": call.call_id, "output": "18C"}])
    assert second.output_text == "18C in Paris"
    messages = upstream.last.json["messages"]
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "18C"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_retrieve_input_items_delete(sdk, upstream, stream):
    upstream.push(Script(content="Hi!"))
    kwargs = {"model": "claude-test", "input": [
        {"role": "user", "content": "hello"},
        {"role": "user", "content": [{"type": "input_text", "text": "again"}]}]}
    if stream:
        with sdk.responses.stream(**kwargs) as events:
            made = events.get_final_response()
    else:
        made = sdk.responses.create(**kwargs)
    got = sdk.responses.retrieve(made.id)
    assert got.id == made.id and got.output_text == "Hi!" and got.usage == made.usage
    assert got.status == "completed"
    items = sdk.responses.input_items.list(made.id, order="asc")
    assert [i.content[0].text for i in items.data] == ["hello", "again"]
    assert all(i.id and i.type == "message" and i.role == "user" for i in items.data)
    newest = sdk.responses.input_items.list(made.id, limit=1)
    assert [i.content[0].text for i in newest.data] == ["again"] and newest.has_more
    assert sdk.responses.delete(made.id) is None
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.delete(made.id)


@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
def test_item_references_resolve_to_stored_items(app, sdk, upstream, model):
    """What the Vercel AI SDK sends with store on: earlier items by id, not the items."""
    upstream.push(Script(tool_calls=[("get_weather", {"city": "Paris"})]),
                  Script(content="18C in Paris"))
    tools = [{"type": "function", "name": "get_weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    first = sdk.responses.create(model="chat-test", tools=tools, input=[
        {"role": "user", "content": "Weather in Paris?"}])
    question = sdk.responses.input_items.list(first.id).data[0]
    call = first.output[0]
    second = sdk.responses.create(model=model, tools=tools, input=[
        {"type": "item_reference", "id": question.id},
        {"type": "item_reference", "id": call.id},
        {"type": "function_call_output", "call_id": call.call_id, "output": "18C"}])
    assert second.output_text == "18C in Paris"
    sent_body = json.dumps(upstream.last.json)
    assert "Weather in Paris?" in sent_body and call.call_id in sent_body
    assert "item_reference" not in sent_body
    _, other_key = make_user(app, "eve")
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.with_options(api_key=other_key).responses.create(model=model, input=[
            {"type": "item_reference", "id": call.id}])
    assert caught.value.body["param"] == "input[0].id"
    sdk.responses.delete(first.id)
    sdk.responses.delete(second.id)  # it holds the resolved items as its own input
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model=model, input=[{"type": "item_reference", "id": call.id}])


def test_passthrough_response_is_stored_under_its_id(sdk, upstream):
    made = sdk.responses.create(model="gpt-test", input="hello")
    assert made.id == "resp_fake"  # the upstream's own id
    assert sdk.responses.retrieve("resp_fake").output_text == "echo: hello"


def test_another_users_response_is_not_found(app, sdk, upstream):
    made = sdk.responses.create(model="chat-test", input="secret plans")
    _, other_key = make_user(app, "mallory")
    other = sdk.with_options(api_key=other_key)
    for call in (lambda: other.responses.retrieve(made.id),
                 lambda: other.responses.input_items.list(made.id),
                 lambda: other.responses.delete(made.id),
                 lambda: other.responses.create(model="chat-test", input="more",
                                                previous_response_id=made.id)):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert "secret" not in caught.value.response.text
    assert sdk.responses.retrieve(made.id).output_text == "echo: secret plans"
    assert len(upstream.received) == 1  # the refused turn never reached a provider


def test_store_false_keeps_nothing(app, sdk, upstream):
    made = sdk.responses.create(model="chat-test", input="forget me", store=False)
    assert made.store is False
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(made.id)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StoredResponse)) == 0


def test_retention_and_sweep(app, sdk, upstream):
    old = sdk.responses.create(model="chat-test", input="old")
    new = sdk.responses.create(model="chat-test", input="new")
    with app.app_context():
        db.session.execute(update(StoredResponse).where(StoredResponse.id == old.id)
                           .values(created_at=utcnow() - timedelta(days=31)))
        db.session.commit()
    with pytest.raises(openai.NotFoundError):  # expired: gone even before the sweep runs
        sdk.responses.retrieve(old.id)
    assert app.extensions["conversations"].sweep() == 1
    assert sdk.responses.retrieve(new.id).output_text == "echo: new"
    runner = app.test_cli_runner()
    result = runner.invoke(args=["responses", "sweep"])
    assert result.exit_code == 0 and "0 stored responses" in result.output

    # each worker also sweeps now and then, when it stores a response
    with app.app_context():
        db.session.execute(update(StoredResponse).values(
            created_at=utcnow() - timedelta(days=40)))
        db.session.commit()
    app.extensions["conversations"].sweep_every = 0
    newest = sdk.responses.create(model="chat-test", input="newest")
    deadline = time.monotonic() + 5
    while stored_ids(app) != [newest.id] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored_ids(app) == [newest.id]


def stored_ids(app) -> list:
    with app.app_context():
        ids = db.session.scalars(select(StoredResponse.id)).all()
        db.session.remove()
        return ids


@pytest.mark.parametrize("model, estimated", [("claude-test", False), ("gemini-test", False),
                                              ("gpt-test", False), ("chat-test", True)])
def test_input_tokens(sdk, upstream, model, estimated):
    raw = sdk.responses.input_tokens.with_raw_response.count(
        model=model, input="how many tokens is this", instructions="Be brief.")
    count = raw.parse()
    assert count.object == "response.input_tokens" and count.input_tokens > 0
    assert (raw.headers.get("x-tollgate-token-count") == "estimated") is estimated
    if not estimated:
        assert upstream.last.path.endswith(("count_tokens", ":countTokens", "input_tokens"))


@pytest.mark.parametrize("body, param", [
    ({"input": "hi"}, "model"),
    ({"model": "chat-test"}, "input"),
    ({"model": "chat-test", "input": 5}, "input"),
    ({"model": "chat-test", "input": "hi", "temperature": "hot"}, "temperature"),
    ({"model": "chat-test", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "chat-test", "input": "hi", "previous_response_id": "no such\n"},
     "previous_response_id"),
    ({"model": "chat-test", "input": "hi", "metadata": {"k": 5}}, "metadata"),
    ({"model": "chat-test", "input": "hi", "truncation": "sometimes"}, "truncation"),
    ({"model": "gpt-test", "input": "hi", "background": True}, "background"),
    ({"model": "chat-test", "input": [{"role": "user", "content": "bad \ud800 half"}]},
     "input[0].content"),
    ({"model": "gpt-test", "input": "hi", "conversation": "conv_1"}, "conversation"),
    ({"model": "claude-test", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"model": "chat-test", "input": [{"type": "message", "role": "robot", "content": "x"}]},
     "input[0].role"),
    ({"model": "gemini-test", "input": [{"role": "user", "content": [
        {"type": "input_image", "file_id": "file_1"}]}]}, "input[0].content[0].file_id"),
])
def test_bad_bodies_name_the_field(client, api_key, upstream, body, param):
    resp = client.post("/v1/responses", json=body, headers={"Authorization": f"Bearer {api_key}"})
    assert resp.status_code == 400, resp.json
    error = resp.json["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert upstream.received == []


def test_unknown_previous_response_is_404(client, api_key):
    resp = client.post("/v1/responses", headers={"Authorization": f"Bearer {api_key}"},
                       json={"model": "chat-test", "input": "hi",
                             "previous_response_id": "resp_nothing"})
    assert resp.status_code == 404 and resp.json["error"]["param"] == "previous_response_id"
