"""The metering policy: what an answer costs once it is complete, whatever way it ended.

- A whole answer is charged the usage the upstream reported; when it reported none, the output
  is counted from the answer the client got (marked `estimated`), the prompt from our estimate.
- A stream that completed is charged the last usage the upstream reported (the output relayed,
  counted, when it reported none: `estimated`).
- A stream that did not complete (the client left, the upstream broke, the time limit cut it) is
  charged the larger of the output the upstream reported so far and the output counted from what
  was relayed, `partial` (and `estimated` when the count is ours): usage sent mid-stream is
  interim (Anthropic's message_start says output_tokens 1; Gemini's chunks carry no
  candidatesTokenCount before the last).
- A stream whose upstream failed before any output is free: its hold is released. One whose
  client left first (even before its first byte) is not: the upstream had accepted the request,
  providers bill its prompt, and the relay closed the upstream at once, so it costs at least the
  prompt.
- A request that failed before anything was relayed is free (release).
- Images a model made (Gemini image models) are charged per image relayed, at the price of the
  request's image quality, whole or streamed alike; their tokens are not charged as output.
"""

from dataclasses import replace

from translation.ir import Usage


class Meter:
    """One request's hold (services.billing.Ticket, which carries the model's price) and the
    client's wire format, whose metering reads the answers."""

    def __init__(self, billing, ticket, client_format, *, info=None):
        self.billing, self.ticket, self.format = billing, ticket, client_format
        self.info = info  # tracing.RequestInfo: what was charged, for the request's log line
        self.settled = False  # charged or released: the hold is settled once

    def _charge(self, usage, **how):
        self.settled = True
        cost = self.billing.charge(self.ticket, usage, **how)
        if self.info is not None:
            self.info.charged(usage, cost)
        return cost

    @property
    def price(self):
        """Usage -> credits, for answers that show their cost as they stream."""
        return self.ticket.price.cost

    def whole(self, body: bytes, usage) -> bytes:
        """Charge a complete answer; returns its body with `credits_consumed` added."""
        estimated = usage is None or usage.input == usage.output == 0  # no tokens reported
        if estimated:  # the upstream reported nothing: count it ourselves
            try:
                text = self.format.output_text_of_body(body)
            except (ValueError, TypeError, AttributeError, KeyError):  # a 2xx body of odd shape
                text = ""  # relayed as it came, charged for its prompt
            usage = replace(self._estimate(text), images=usage.images if usage else 0)
        cost = self._charge(usage, estimated=estimated)
        return self.format.with_credits(body, cost)

    def stream_ended(self, tap, outcome: str) -> None:
        """Settle a stream once it ended (translation.taps.Tap; outcome from the relay)."""
        complete = outcome == "complete"
        if tap.usage is not None and complete:
            self._charge(with_images(tap.usage, tap.images))
            return
        chars = tap.output_chars(self.format.output_text_of_events)
        if (tap.usage is None and not chars and not tap.images
                and outcome in ("upstream_error", "truncated")):
            self.release()
            return
        counted = self.format.estimate_length_tokens(chars)
        usage, estimated = cut_stream_usage(tap.usage, counted, self.ticket.prompt_estimate)
        self._charge(with_images(usage, tap.images), estimated=estimated, partial=not complete)

    def release(self) -> None:
        """Nothing billable was produced: give the whole hold back (unless it was settled)."""
        if not self.settled:
            self.settled = True
            self.billing.release(self.ticket)

    def _estimate(self, text: str) -> Usage:
        return Usage(input=self.ticket.prompt_estimate,
                     output=self.format.estimate_text_tokens(text))


def with_images(usage, images: int):
    """`usage` counting the images a stream relayed (the most of its own count and the tap's)."""
    return replace(usage, images=images) if images > usage.images else usage


def cut_stream_usage(reported, counted: int, prompt_estimate: int) -> tuple[Usage, bool]:
    """(usage, estimated) of a stream without final usage: the upstream's counts so far, with
    the output raised to what we counted from the relayed text when that is more."""
    if reported is None:
        return Usage(input=prompt_estimate, output=counted), True
    if counted > reported.output:
        return replace(reported, output=counted), True
    return reported, False
