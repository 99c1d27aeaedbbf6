"""The metering policy: what an answer costs once it is complete, whatever way it ended.

- A whole answer is charged the usage the upstream reported; when it reported none, the output
  is counted from the answer the client got (marked `estimated`), the prompt from our estimate.
- A stream is charged the last usage the upstream reported, `partial` unless it completed;
  without any, the output relayed to the client is counted (`estimated`). A stream that relayed
  no output and did not complete (an upstream error before the first token) is free: its hold
  is released.
- A request that failed before anything was relayed is free (release).
"""

from translation.ir import Usage


class Meter:
    """One request's hold (services.billing.Ticket, which carries the model's price) and the
    client's wire format, whose metering reads the answers."""

    def __init__(self, billing, ticket, client_format):
        self.billing, self.ticket, self.format = billing, ticket, client_format

    @property
    def price(self):
        """Usage -> credits, for answers that show their cost as they stream."""
        return self.ticket.price.cost

    def whole(self, body: bytes, usage) -> bytes:
        """Charge a complete answer; returns its body with `credits_consumed` added."""
        estimated = usage is None
        if estimated:  # the upstream reported nothing: count it ourselves
            usage = self._estimate(self.format.output_text_of_body(body))
        cost = self.billing.charge(self.ticket, usage, estimated=estimated)
        return self.format.with_credits(body, cost)

    def stream_ended(self, tap, outcome: str) -> None:
        """Settle a stream once it ended (translation.taps.Tap; outcome from the relay)."""
        partial = outcome != "complete"
        if tap.usage is not None:
            self.billing.charge(self.ticket, tap.usage, partial=partial)
            return
        text = self.format.output_text_of_events(bytes(tap.relayed))
        if not text and partial:
            self.release()
            return
        self.billing.charge(self.ticket, self._estimate(text), estimated=True, partial=partial)

    def release(self) -> None:
        """Nothing billable was produced: give the whole hold back."""
        self.billing.release(self.ticket)

    def _estimate(self, text: str) -> Usage:
        return Usage(input=self.ticket.prompt_estimate,
                     output=self.format.estimate_text_tokens(text))
