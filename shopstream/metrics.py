"""Business rules of the analytics, defined once and used by every job and check.

Revenue rule (net revenue, recognised on the date of each event):
  * a NEW event books its order:               + quantity * unit_price
  * a CANCELLED event reverses that booking:   - quantity * unit_price
  * a RETURNED event refunds it:               - quantity * unit_price
So a placed-then-cancelled or placed-then-returned order nets to zero over time, every date's
figure depends on that date's events only (re-running a date never changes another), and
`gross_revenue` (NEW only) is never negative while `net_revenue` of a single day can be if
reversals of earlier orders outweigh that day's bookings. Quantities sold follow the same signs.
Money is Decimal(12, 2) end to end and rounded half-up to the cent only when presented.
"""

from __future__ import annotations

from shopstream.contract import CANCELLED, NEW, RETURNED

# The shop's currency: catalogue prices and every amount derived from them (no conversion).
CURRENCY = "USD"

REVENUE_SIGN: dict[str, int] = {NEW: 1, CANCELLED: -1, RETURNED: -1}

TOP_N_PRODUCTS = 10
# Tie rule of the top-products ranking: more net quantity first, then more net revenue, then the
# smaller product_id; ranks are dense row numbers 1..10 (no shared ranks), so exactly
# min(10, products) rows per date.
TOP_PRODUCTS_ORDER = "net_quantity DESC, net_revenue DESC, product_id ASC"

UNKNOWN_REGION = "UNKNOWN"
