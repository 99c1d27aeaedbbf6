"""The internal shape every wire format maps into."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    """Canonical token counts. `input` excludes cached tokens; `output` includes reasoning."""

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0

    @property
    def total(self) -> int:
        return self.input + self.cache_read + self.cache_write + self.output
