"""Image sizes as the aspect ratios that APIs taking a ratio instead of pixels accept."""

import math


def nearest_aspect_ratio(size: str, choices: tuple[str, ...]) -> str:
    """The ratio among `choices` ("16:9", ...) closest to a "WxH" size (on a log scale, so
    2:1 and 1:2 are equally far from 1:1)."""
    width, height = (int(x) for x in size.lower().split("x"))
    target = math.log(width / height)
    return min(choices, key=lambda r: abs(math.log(_ratio(r)) - target))


def _ratio(choice: str) -> float:
    w, h = choice.split(":")
    return int(w) / int(h)
