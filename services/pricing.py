"""Prices per model, and the cost of a request's usage. Credits per 1,000 tokens, and per image
(`image` for a standard one, `image_hd` for an HD one), exact."""

from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal

from models.credits import MICRO

THOUSAND = Decimal(1000)


def as_decimal(value) -> Decimal:
    """A config number as an exact Decimal (TOML floats go through their shortest text form)."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True)
class Price:
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    minimum: Decimal
    max_output_tokens: int
    image: Decimal = Decimal(10)  # per image returned (the price of the request's quality)
    image_hd: Decimal = Decimal(15)

    def cost(self, usage) -> Decimal:
        """What `usage` costs: the per-1k prices and the per-image price applied, and never less
        than the minimum."""
        total = (usage.input * self.input + usage.cache_read * self.cache_read
                 + usage.cache_write * self.cache_write + usage.output * self.output) / THOUSAND
        total += usage.images * self.image
        return max(total, self.minimum).quantize(MICRO, rounding=ROUND_HALF_UP)

    def at_quality(self, quality: str) -> "Price":
        """This price with the per-image price of `quality` ("standard" or "hd")."""
        return replace(self, image=self.image_hd) if quality == "hd" else self

    def images_only(self) -> "Price":
        """This price charging images alone (the images endpoints: no tokens, no minimum)."""
        zero = Decimal(0)
        return replace(self, input=zero, output=zero, cache_read=zero, cache_write=zero,
                       minimum=zero)


class Pricing:
    """Looks up a model's price in the PRICING config, falling back to the default entry."""

    def __init__(self, config: dict):
        config = config or {}
        self.default = self._price(config.get("default", {}), None)
        self.models = {name: self._price(entry, self.default)
                       for name, entry in (config.get("models") or {}).items()}

    def for_model(self, model: str) -> Price:
        return self.models.get(model, self.default)

    @staticmethod
    def _price(entry: dict, base: Price | None) -> Price:
        def get(name, fallback):
            return as_decimal(entry[name]) if name in entry else fallback

        input_price = get("input", base.input if base else Decimal(1))
        return Price(
            input=input_price,
            output=get("output", base.output if base else Decimal(3)),
            cache_read=get("cache_read", input_price),
            cache_write=get("cache_write", input_price),
            minimum=get("minimum", base.minimum if base else Decimal(1)),
            max_output_tokens=int(entry.get("max_output_tokens",
                                            base.max_output_tokens if base else 4096)),
            image=get("image", base.image if base else Decimal(10)),
            image_hd=get("image_hd", base.image_hd if base else Decimal(15)),
        )
