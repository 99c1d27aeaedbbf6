"""The embeddings exchange: route, hold credits, call the upstream, answer in the client's format.

Same format on both sides and one upstream call enough: the body goes as it came and the
answer's bytes come back (re-encoded only when the vectors' encoding is not the one the client
asked for). Otherwise the inputs go through translation.embeddings: split into as many upstream
calls as the provider needs (Gemini takes 100 a call; an OpenAI call has one `dimensions`), the
calls after the first sent in parallel, and the vectors put back in the inputs' order.

Credits: the inputs' estimated tokens are held before anything is forwarded; the upstream's
count is charged (or, when it reports none, the estimate, marked `estimated`), once per request.
"""

import logging
from dataclasses import dataclass

from gevent import monkey
from gevent.pool import Pool

import tracing
from errors import GatewayError, InvalidRequest, UpstreamError, UpstreamUnavailable
from providers.registry import EMBEDDINGS
from services.billing import InsufficientCredits
from services.relay import Reply
from translation.embeddings import MAX_INPUTS, EmbedAnswer, batches, estimate_tokens
from translation.ir import Usage
from translation.registry import FORMATS

log = logging.getLogger(__name__)


@dataclass
class _Served:
    """What a route produced: the answer, and the upstream's own bytes when they can go as are."""

    answer: EmbedAnswer
    counted: int  # input tokens as the upstream counted them
    unread: int  # our count of the inputs whose call the upstream did not count
    raw: bytes | None = None  # the upstream's own answer, when it goes to the client as is
    provider: str = ""  # the name of the provider that served it


class PartlyServed(Exception):
    """Some upstream calls of a split request succeeded before one failed: those are charged."""

    def __init__(self, error: GatewayError, tokens: int, estimated: bool):
        super().__init__(error.message)
        self.error, self.tokens, self.estimated = error, tokens, estimated


class Embeddings:
    def __init__(self, registry, billing, router, *, max_input_tokens: int, concurrency: int = 4):
        self.registry = registry
        self.billing = billing
        self.router = router  # providers.routing.Router: URLs, keys, breakers, retry budget
        self.max_input_tokens = max_input_tokens
        self.concurrency = max(1, concurrency)

    def embed(self, client_format: str, body: dict, *, caller, method: str = "") -> Reply:
        """Serve one embeddings request in `client_format` (the body is already validated)."""
        fmt = FORMATS[client_format].embeddings
        forced = body.pop("provider", None)
        routes = self.registry.routes(body["model"], forced, purpose=EMBEDDINGS)
        req = fmt.request_to_ir(body, method)
        estimates = [estimate_tokens(item) for item in req.inputs]
        self._check_size(req, sum(estimates))
        info = tracing.current() or tracing.RequestInfo("")
        info.model = req.model
        # the usage record's request id is unique: only an id we made, never a client's
        ticket = self._reserve(caller, req.model, sum(estimates),
                               info.id if info.generated else "")
        try:
            served, headers = self._serve(fmt, body, req, routes, estimates)
        except PartlyServed as partly:
            usage = Usage(input=partly.tokens)
            info.charged(usage, self.billing.charge(ticket, usage, estimated=partly.estimated,
                                                    partial=True))
            raise partly.error from None
        except BaseException:
            self.billing.release(ticket)
            raise
        ticket.provider = served.provider
        tokens, estimated = served.counted + served.unread, served.unread > 0
        usage = Usage(input=tokens)
        cost = self.billing.charge(ticket, usage, estimated=estimated)
        info.charged(usage, cost)
        if served.raw is not None:
            out = fmt.relay_body(served.raw, cost)
        else:
            out = fmt.answer_from_ir(served.answer, req, tokens, cost)
        if estimated:
            headers["x-tollgate-token-count"] = "estimated"
        return Reply(200, out, headers=headers)

    def _check_size(self, req, tokens: int) -> None:
        if len(req.inputs) > MAX_INPUTS:  # the schemas refuse this first; kept for other callers
            raise InvalidRequest(f"At most {MAX_INPUTS} inputs per request.",
                                 param=req.size_param)
        if tokens > self.max_input_tokens:
            raise InvalidRequest(
                f"The inputs are too large: about {tokens} tokens, more than the "
                f"{self.max_input_tokens} one request may embed. Send fewer or shorter inputs.",
                param=req.size_param)

    def _reserve(self, caller, model: str, tokens: int, request_id: str):
        try:
            return self.billing.reserve(caller, model, tokens, 0, request_id=request_id)
        except InsufficientCredits as err:
            most = self.billing.pricing.for_model(model).cost(Usage(input=tokens))
            err.message = (f"Insufficient credits: embedding these inputs may cost up to {most} "
                           "credits. Top up, or send fewer inputs.")
            raise

    def _serve(self, fmt, body, req, routes, estimates) -> tuple[_Served, dict]:
        """(what served the request, the headers naming it) from the routing plan's first
        attempt that answers: each attempt is one URL and key of a provider that embeds; a
        failure another URL, key or provider may not have (refused, timed out, 5xx, 429, a
        refused key) moves on, as long as no call of this request has succeeded."""
        routes = [route for route in routes if route.provider.supports_embeddings]
        if not routes:
            raise InvalidRequest(f"No provider can embed with '{req.model}'.", param="model")
        info = tracing.current()
        plan = self.router.plan(routes)
        for route in plan:
            try:
                if (fmt.name == route.provider.wire_format
                        and len(req.inputs) <= route.provider.max_embedding_inputs):
                    served = self._passthrough(fmt, body, req, route, estimates)
                else:
                    served = self._translated(fmt, req, route, estimates)
            except (UpstreamUnavailable, UpstreamError) as err:
                plan.failed(route, err)  # raises what no other attempt could help with
                log.warning("provider %s attempt %d failed (%s): %s",
                            route.provider.upstream.name, plan.attempts, err.fault, err.message)
                continue
            headers = plan.succeeded(route)
            served.provider = plan.provider
            if info is not None:
                info.provider, info.attempts = plan.provider, plan.attempts
            return served, headers
        if info is not None:
            info.attempts = plan.attempts
        raise plan.exhausted(req.model)

    def _passthrough(self, fmt, body, req, route, estimates) -> _Served:
        payload, options = fmt.passthrough_payload(body, route.upstream_model, req.method)
        content, data = route.provider.embed(payload, model=route.upstream_model, **options)
        relay = fmt.relayable(content, data, req)  # else re-encoded, from decoded vectors
        answer = self._read(fmt, data, len(req.inputs), options, route, decode=not relay)
        raw = content if relay else None
        if answer.prompt_tokens is None:
            return _Served(answer, 0, sum(estimates), raw=raw)
        return _Served(answer, answer.prompt_tokens, 0, raw=raw)

    def _translated(self, fmt, req, route, estimates) -> _Served:
        """Client format -> IR -> provider format, in as many calls as the provider needs."""
        dst = FORMATS[route.provider.wire_format].embeddings
        groups = batches(len(req.inputs), route.provider.max_embedding_inputs,
                         key=lambda i: dst.group_key(req.inputs[i]))

        def call(group):
            payload, options = dst.request_from_ir(req, [req.inputs[i] for i in group],
                                                   route.upstream_model)
            _, data = route.provider.embed(payload, model=route.upstream_model, **options)
            return self._read(dst, data, len(group), options, route)

        first = call(groups[0])  # failures here may move on to the next route
        results = [(groups[0], first)] + self._call_rest(call, groups[1:], estimates, [first],
                                                         groups[:1])
        vectors = [None] * len(req.inputs)
        counted, unread = 0, 0
        for group, answer in results:
            for i, vector in zip(group, answer.vectors, strict=True):
                vectors[i] = vector
            if answer.prompt_tokens is None:
                unread += sum(estimates[i] for i in group)
            else:
                counted += answer.prompt_tokens
        return _Served(EmbedAnswer(vectors, counted if unread == 0 else None), counted, unread)

    def _call_rest(self, call, groups, estimates, done, done_groups) -> list:
        """The remaining calls, at most `concurrency` at once under gevent; if one fails, the
        others' tokens are charged and the failure is the request's answer."""
        if not groups:
            return []

        def attempt(group):
            try:
                return group, call(group)
            except GatewayError as err:
                return group, err

        if len(groups) > 1 and self.concurrency > 1 and monkey.is_module_patched("socket"):
            outcomes = Pool(self.concurrency).map(attempt, groups)
        else:
            outcomes = [attempt(g) for g in groups]
        failed = [r for _, r in outcomes if isinstance(r, GatewayError)]
        if not failed:
            return outcomes
        answered = [(g, r) for g, r in [*zip(done_groups, done, strict=True), *outcomes]
                    if not isinstance(r, GatewayError)]
        tokens = sum(r.prompt_tokens if r.prompt_tokens is not None
                     else sum(estimates[i] for i in g) for g, r in answered)
        estimated = any(r.prompt_tokens is None for _, r in answered)
        raise PartlyServed(failed[0], tokens, estimated)

    @staticmethod
    def _read(fmt, data, count: int, options: dict, route, decode=True) -> EmbedAnswer:
        try:
            return fmt.answer_to_ir(data, count, options, decode=decode)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise UpstreamUnavailable(f"provider {route.provider.upstream.name} sent an "
                                      f"unreadable embeddings answer: {exc}") from exc
