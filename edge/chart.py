"""Geometry of the console's spend chart: stacked bars per day and model, drawn as SVG by the
template (no script needed, so it shows with JavaScript off too)."""

from decimal import Decimal

WIDTH, HEIGHT = 920, 250
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28
COLOURS = ("#4f46e5", "#0891b2", "#16a34a", "#d97706", "#db2777", "#7c3aed", "#64748b")


def nice_ceiling(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 x 10^n at or above value (at least 1)."""
    if value <= 0:
        return Decimal(1)
    exponent = Decimal(10) ** (len(str(int(value))) - 1) if value >= 1 else Decimal(
        "0.000001")
    while exponent * 10 < value:
        exponent *= 10
    for step in (1, 2, Decimal("2.5"), 5, 10):
        if exponent * step >= value:
            return exponent * step
    return exponent * 10


def stacked_bars(chart) -> dict:
    """Rectangles, axis ticks and legend entries for a services.usage.SpendChart."""
    top = nice_ceiling(max(chart.totals, default=Decimal(0)))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(chart.days), 1)
    bar_w = max(slot * 0.7, 1)
    bars = []
    for i, day in enumerate(chart.days):
        base = 0.0
        for n, (model, values) in enumerate(chart.series):
            amount = values[i]
            if not amount:
                continue
            height = float(amount / top) * plot_h
            bars.append({"x": round(LEFT + i * slot + (slot - bar_w) / 2, 2),
                         "y": round(TOP + plot_h - base - height, 2),
                         "w": round(bar_w, 2), "h": round(max(height, 0.5), 2),
                         "colour": COLOURS[n % len(COLOURS)],
                         "label": f"{day.isoformat()} · {model}: {amount.normalize():f} credits"})
            base += height
    ticks = [{"y": round(TOP + plot_h - plot_h * k / 4, 2), "label": _short(top * k / 4)}
             for k in range(5)]
    days = [{"x": round(LEFT + i * slot + slot / 2, 2), "label": day.strftime("%b %d")}
            for i, day in enumerate(chart.days) if i % 5 == 0 or i == len(chart.days) - 1]
    legend = [{"model": model, "colour": COLOURS[n % len(COLOURS)],
               "total": sum(values, Decimal(0))} for n, (model, values) in
              enumerate(chart.series)]
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT,
            "bottom": TOP + plot_h, "bars": bars, "ticks": ticks, "days": days,
            "legend": legend, "empty": not bars, "day_label_y": HEIGHT - 8}


def _short(value: Decimal) -> str:
    value = Decimal(value)
    if value >= 1000:
        return f"{value / 1000:.3g}k"
    return f"{value.normalize():f}" if value == value.to_integral() else f"{value:.3g}"
