"""Stored Responses and `previous_response_id`: the gateway keeps each conversation itself.

A request naming `previous_response_id` gets the whole history rebuilt here (every earlier
turn's input items and output, oldest first) and sent as its `input`, so any provider can
serve the next turn, including after a failover or a change of model. Passthrough upstreams
get the rebuilt history too, never the id: the response may have been made elsewhere.

Rows are written with SQLAlchemy Core on the engine (a stream finishes outside any request),
before the terminal event reaches the client: a client that sends its next turn the moment
it sees `response.completed` finds the previous one stored.
"""

import json
import logging
import re
import threading
import time
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import delete, insert, literal, select

from errors import InvalidRequest, NotFound
from models.base import utcnow
from models.responses import StoredItem, StoredResponse
from translation.responses_objects import TERMINAL, new_id
from translation.sse import EventSplitter, event_data

log = logging.getLogger(__name__)
RESPONSE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TURNS = 1000  # the longest chain of previous_response_id links followed
TABLE, ITEMS = StoredResponse.__table__, StoredItem.__table__


def check_id(value, param: str = "response_id") -> str:
    """A response id fit for a query: letters, digits, '_' and '-', at most 64."""
    if not isinstance(value, str) or not RESPONSE_ID.fullmatch(value):
        raise InvalidRequest(f"Invalid '{param}': expected an id like 'resp_123'.", param=param)
    return value


class ConversationStore:
    def __init__(self, engine, *, retention_days: float, sweep_every: float = 3600.0):
        self.engine = engine
        self.retention = timedelta(days=retention_days)
        self.sweep_every = sweep_every
        self._last_sweep = time.monotonic()

    def _cutoff(self):
        return utcnow() - self.retention

    def save(self, user_id: int, response: dict, input_items: list, previous_id=None) -> None:
        if not RESPONSE_ID.fullmatch(str(response.get("id") or "")):
            log.warning("not storing a response whose id does not fit the table")
            return
        items = [{"user_id": user_id, "response_id": response["id"], "item_id": item["id"],
                  "item": json.dumps(item)}
                 for item in [*input_items, *(response.get("output") or [])]
                 if isinstance(item, dict) and RESPONSE_ID.fullmatch(str(item.get("id") or ""))]
        with self.engine.begin() as conn:
            conn.execute(insert(TABLE).values(
                id=response["id"], user_id=user_id, previous_id=previous_id,
                model=str(response.get("model") or "")[:256],
                input_items=json.dumps(input_items), body=json.dumps(response),
                created_at=utcnow()))
            if items:
                conn.execute(insert(ITEMS), items)
        if time.monotonic() - self._last_sweep > self.sweep_every:
            self._last_sweep = time.monotonic()
            threading.Thread(target=self._sweep_safely, name="responses-sweep",
                             daemon=True).start()  # off the response path

    def _row(self, user_id: int, response_id: str):
        with self.engine.connect() as conn:
            return conn.execute(select(TABLE.c.body, TABLE.c.input_items, TABLE.c.previous_id)
                                .where(TABLE.c.id == response_id, TABLE.c.user_id == user_id,
                                       TABLE.c.created_at >= self._cutoff())).first()

    def get(self, user_id: int, response_id: str) -> dict:
        """The stored response object; 404 when absent, expired or another user's."""
        row = self._row(user_id, check_id(response_id))
        if row is None:
            raise _missing(response_id)
        return json.loads(row.body)

    def input_items(self, user_id: int, response_id: str) -> list:
        row = self._row(user_id, check_id(response_id))
        if row is None:
            raise _missing(response_id)
        return json.loads(row.input_items)

    def resolve(self, user_id: int, items: list) -> list:
        """Items with each `item_reference` replaced by the stored item it names (this user's,
        not expired; the latest stored under that id); 404 naming the reference otherwise."""
        wanted = {i: item.get("id") for i, item in enumerate(items)
                  if isinstance(item, dict) and item.get("type") == "item_reference"}
        if not wanted:
            return items
        for i, item_id in wanted.items():
            check_id(item_id, f"input[{i}].id")
        query = (select(ITEMS.c.item_id, ITEMS.c.item)
                 .join(TABLE, TABLE.c.id == ITEMS.c.response_id)
                 .where(ITEMS.c.user_id == user_id, ITEMS.c.item_id.in_(set(wanted.values())),
                        TABLE.c.created_at >= self._cutoff())
                 .order_by(ITEMS.c.id))
        with self.engine.connect() as conn:
            found = {row.item_id: json.loads(row.item) for row in conn.execute(query)}
        out = list(items)
        for i, item_id in wanted.items():
            if item_id not in found:
                raise NotFound(f"Item with id '{item_id}' not found.", param=f"input[{i}].id")
            out[i] = found[item_id]
        return out

    def delete(self, user_id: int, response_id: str) -> None:
        check_id(response_id)
        with self.engine.begin() as conn:
            conn.execute(delete(ITEMS).where(ITEMS.c.response_id == response_id,
                                             ITEMS.c.user_id == user_id))
            gone = conn.execute(delete(TABLE).where(TABLE.c.id == response_id,
                                                    TABLE.c.user_id == user_id)).rowcount
        if not gone:
            raise _missing(response_id)

    def history(self, user_id: int, response_id: str) -> list:
        """Every item of the conversation up to and including `response_id`, oldest first.

        One query: a recursive walk of the previous_id links (this user's rows, unexpired; a
        turn deleted or expired ends the walk, the history starting after it)."""
        check_id(response_id, "previous_response_id")
        live = (TABLE.c.user_id == user_id, TABLE.c.created_at >= self._cutoff())
        columns = (TABLE.c.id, TABLE.c.previous_id, TABLE.c.input_items, TABLE.c.body)
        chain = (select(*columns, literal(0).label("depth"))
                 .where(TABLE.c.id == response_id, *live).cte("chain", recursive=True))
        chain = chain.union_all(
            select(*columns, (chain.c.depth + 1).label("depth"))
            .join(chain, TABLE.c.id == chain.c.previous_id)
            .where(*live, chain.c.depth < MAX_TURNS - 1))
        with self.engine.connect() as conn:
            rows = conn.execute(select(chain.c.input_items, chain.c.body)
                                .order_by(chain.c.depth.desc())).all()
        if not rows:
            raise _missing(response_id, "previous_response_id")
        return [item for row in rows
                for item in json.loads(row.input_items) + (json.loads(row.body).get("output")
                                                           or [])]

    def _sweep_safely(self) -> None:
        try:
            self.sweep()
        except Exception as exc:  # the next save tries again after another interval
            log.error("sweeping stored responses failed: %s", type(exc).__name__)

    def sweep(self) -> int:
        """Delete responses older than the retention period; returns how many."""
        self._last_sweep = time.monotonic()
        expired = select(TABLE.c.id).where(TABLE.c.created_at < self._cutoff())
        with self.engine.begin() as conn:  # items first: no database is asked to cascade
            conn.execute(delete(ITEMS).where(ITEMS.c.response_id.in_(expired)))
            return conn.execute(delete(TABLE).where(TABLE.c.created_at < self._cutoff())).rowcount


def _missing(response_id: str, param: str = "response_id") -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param=param)


# ---- the create workflow --------------------------------------------------------------------
def input_items(value) -> list:
    """The request's `input` as a list of items, each with an id (as input_items lists them)."""
    items = [{"role": "user", "content": value}] if isinstance(value, str) else list(value or [])
    out = []
    for item in items:
        item = dict(item) if isinstance(item, dict) else item
        if isinstance(item, dict):
            kind = item.setdefault("type", "message" if "role" in item else None)
            if kind == "message" and isinstance(item.get("content"), str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": item["content"]}]
            prefix = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}
            if kind in prefix and "id" not in item:
                item["id"] = new_id(prefix[kind])
                item.setdefault("status", "completed")
        out.append(item)
    return out


def for_upstream(items: list) -> list:
    """Stored items as input for a new request: ids dropped (they are ours or another
    provider's), reasoning items kept only when they carry their encrypted content."""
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "reasoning" and not item.get("encrypted_content"):
            continue
        if item.get("type") in ("message", "function_call", "function_call_output"):
            item = {k: v for k, v in item.items() if k not in ("id", "status")}
        out.append(item)
    return out


def with_history(store, inbound, user_id: int):
    """The request with the stored conversation before its own input, when it names
    `previous_response_id` (a new Inbound: the client's body itself is never changed)."""
    return _expanded(store, inbound, user_id)[0]


def _expanded(store, inbound, user_id: int):
    """(the request with its history, its own input items with item_references resolved)."""
    previous = inbound.body.get("previous_response_id")
    history = store.history(user_id, previous) if previous else []
    own = store.resolve(user_id, input_items(inbound.body.get("input")))
    body = {**inbound.body, "input": for_upstream(history) + for_upstream(own)}
    return replace(inbound, body=body), own


def create(relay, store, inbound, *, caller, client_socket=None):
    """Serve POST /responses: rebuild the history, relay, keep the response if asked to."""
    previous = inbound.body.get("previous_response_id")
    expanded, own = _expanded(store, inbound, caller.user_id)
    reply = relay.chat(expanded, caller=caller, client_socket=client_socket)
    if inbound.body.get("store") is False or reply.status >= 300:
        return reply

    def save(response: dict) -> None:
        response["previous_response_id"] = previous
        try:
            store.save(caller.user_id, response, own, previous)
        except Exception as exc:  # the answer still goes out; only its storage failed
            log.error("storing response %s failed: %s", response.get("id"), type(exc).__name__)

    if isinstance(reply.body, bytes):
        try:
            response = json.loads(reply.body)
        except ValueError:
            return reply
        if isinstance(response, dict) and response.get("id"):
            save(response)
            if previous:  # the upstream saw the rebuilt history, not the id: name the turn
                reply.body = json.dumps(response).encode()
        return reply
    reply.body = StoringStream(reply.body, save)
    return reply


class StoringStream:
    """A relayed Responses stream that stores the final response before its terminal event
    goes out. Iterates and closes like the stream it wraps."""

    def __init__(self, events, save):
        self._events, self._save = events, save

    def __iter__(self):
        return self

    def __next__(self):
        chunk = next(self._events)
        if b"response.completed" in chunk or b"response.incomplete" in chunk:
            for event in EventSplitter().feed(chunk):  # a relayed chunk holds whole events
                self._maybe_save(event)
        return chunk

    def _maybe_save(self, event: bytes) -> None:
        data = event_data(event)
        if not any(kind.encode() in data[:80] for kind in TERMINAL):
            return
        try:
            response = json.loads(data).get("response")
        except (ValueError, AttributeError):
            return
        if isinstance(response, dict) and response.get("id"):
            self._save(response)

    def close(self):
        close = getattr(self._events, "close", None)
        if close is not None:
            close()
