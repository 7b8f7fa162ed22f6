"""The call page's cost section: the estimate's total and what it is made of."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _


def money(amount: float, currency: str) -> str:
    """Small amounts keep their fractions of a cent: "0.0123 USD"."""
    return f"{amount:.4f} {currency}"


def cost_html(cost: dict | None) -> str:
    if not cost or "total" not in cost:
        return _("Not estimated yet: the estimate is made once the call has ended.")
    currency = cost.get("currency", "")
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{} × {}</td><td>{}</td></tr>",
        (
            (
                _("carrier") if item.get("what") == "carrier" else _("voice"),
                " ".join(filter(None, [item.get("service"), item.get("model")])),
                f"{item.get('quantity', 0):g}",
                item.get("unit", ""),
                money(item.get("amount", 0), currency)
                + (" " + _("(charged by the carrier)") if item.get("source") == "carrier" else ""),
            )
            for item in cost.get("items", ())
        ),
    )
    unpriced = cost.get("unpriced") or ()
    note = (
        format_html(
            "<p>{} {}</p>",
            _("Not priced (no rate in COST_RATES):"),
            ", ".join(
                f"{u.get('quantity', 0):g} {u.get('unit', '')} of {u.get('service', '')}"
                f"{' ' + u['model'] if u.get('model') else ''}"
                for u in unpriced
            ),
        )
        if unpriced
        else ""
    )
    return format_html(
        '<p><strong>{}</strong> {}</p><table class="call-cost">{}</table>{}',
        money(cost["total"], currency),
        _("estimated from list prices; set VOICEAGENTS['COST_RATES'] for yours."),
        rows,
        note,
    )
