"""Charges match the pricing table: per-1k prices, cached tokens, the minimum, exact decimals."""

from decimal import Decimal

from services.pricing import Pricing
from translation.ir import Usage
from translation.openai import usage_from

PRICING = Pricing({"models": {"gpt-big": {"input": 2.5, "output": 10, "cache_read": 0.25,
                                          "cache_write": 3.125, "minimum": 0.01,
                                          "max_output_tokens": 16384}}})


def test_defaults_and_the_minimum():
    price = Pricing({}).for_model("anything")
    assert price.cost(Usage(input=100, output=300)) == Decimal("1.0")  # 0.1 + 0.9
    assert price.cost(Usage(input=1000, output=1000)) == Decimal("4")
    assert price.cost(Usage(input=10, output=10)) == Decimal("1")  # the minimum
    assert price.cost(Usage(cache_read=1000, output=0)) == Decimal("1")  # reads at input price
    assert price.max_output_tokens == 4096


def test_model_prices_are_exact_decimals():
    price = PRICING.for_model("gpt-big")
    assert price.input == Decimal("2.5") and price.cache_write == Decimal("3.125")
    usage = Usage(input=1234, cache_read=1000, cache_write=200, output=777)
    expected = (Decimal(1234) * Decimal("2.5") + Decimal(1000) * Decimal("0.25")
                + Decimal(200) * Decimal("3.125") + Decimal(777) * 10) / 1000
    assert price.cost(usage) == expected.quantize(Decimal("0.000001"))
    assert price.cost(Usage(input=1)) == Decimal("0.01")
    assert PRICING.for_model("other") == Pricing({}).default


def test_openai_cached_tokens_are_split_out():
    usage = usage_from({"prompt_tokens": 1000, "completion_tokens": 50,
                        "prompt_tokens_details": {"cached_tokens": 800}})
    assert usage == Usage(input=200, cache_read=800, output=50)
