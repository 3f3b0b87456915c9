"""What the API accepts, the engine clears: the grid's bounds are the engine's."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from grid_server.domain.market import Book, Order, Utility, Zone, clear
from p2p_energy_client.protocol import MAX_ENERGY_WH, MAX_ORDERS_PER_ENVELOPE, OrderSpec
from p2p_energy_client.units import MAX_PRICE_TICKS, format_price

extreme_prices = st.sampled_from([-MAX_PRICE_TICKS, -1, 0, 1, MAX_PRICE_TICKS]) | st.integers(
    -MAX_PRICE_TICKS, MAX_PRICE_TICKS
)
extreme_energy = st.sampled_from([1, MAX_ENERGY_WH]) | st.integers(1, MAX_ENERGY_WH)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["buy", "sell"]), extreme_energy, extreme_prices),
        min_size=1,
        max_size=MAX_ORDERS_PER_ENVELOPE,
    ),
    extreme_prices,
    extreme_prices,
    st.integers(0, MAX_PRICE_TICKS),
)
def test_a_full_book_of_extreme_orders_clears(
    specs: list[tuple[str, int, int]], a: int, b: int, fee: int
) -> None:
    orders = []
    for i, (side, energy, ticks) in enumerate(specs):
        # Through the wire protocol's own parser: only what it accepts reaches the engine.
        spec = OrderSpec.from_wire(
            {"id": f"o{i}", "side": side, "energy_wh": energy, "price": format_price(ticks)},
            f"place[{i}]",
        )
        orders.append(Order(spec.id, "leaf" if i % 2 else "root", side, energy, ticks))  # type: ignore[arg-type]
    zones = (Zone("root"), Zone("leaf", "root", fee_ticks=fee, capacity_up_wh=MAX_ENERGY_WH))
    result = clear(Book(Utility(max(a, b), min(a, b)), zones, tuple(orders)))
    assert len(result.fills_wh) == len(orders)
