"""Hypothesis strategies for small, often degenerate order books."""

from __future__ import annotations

from hypothesis import strategies as st

from grid_server.domain.market import Book, Order, Utility, Zone

# Few distinct names and prices, so ties and coincidences are common.
_NAMES = st.text(alphabet="abcXY", min_size=1, max_size=3)


@st.composite
def books(draw: st.DrawFn, max_zones: int = 8, max_orders: int = 30) -> Book:
    feed_in = draw(st.integers(-60, 60))  # negative prices happen on sunny holidays
    retail = feed_in + draw(st.sampled_from([0, 1, 2, 5, 17, 40, 100]))
    n_zones = draw(st.integers(1, max_zones))
    ids = draw(st.lists(_NAMES, min_size=n_zones, max_size=n_zones, unique=True))
    chain = draw(st.booleans())
    zones = [Zone(ids[0])]
    for i in range(1, n_zones):
        parent = ids[i - 1] if chain else ids[draw(st.integers(0, i - 1))]
        zones.append(
            Zone(
                ids[i],
                parent,
                fee_ticks=draw(st.sampled_from([0, 0, 1, 2, 3, 7, 25])),
                capacity_up_wh=draw(st.one_of(st.none(), st.integers(0, 3000))),
                capacity_down_wh=draw(st.one_of(st.none(), st.integers(0, 3000))),
            )
        )
    zones = draw(st.permutations(zones))
    prices = st.one_of(
        st.sampled_from([feed_in, retail, (feed_in + retail) // 2]),
        st.integers(feed_in - 5, retail + 5),
    )
    order_ids = draw(
        st.lists(st.text(alphabet="pqrs", min_size=1, max_size=4), max_size=max_orders, unique=True)
    )
    orders = [
        Order(
            oid,
            draw(st.sampled_from(ids)),
            draw(st.sampled_from(["buy", "sell"])),
            draw(st.sampled_from([0, 1, 7, 100, 250, 1000, 2999]) | st.integers(0, 3000)),
            draw(prices),
        )
        for oid in order_ids
    ]
    return Book(Utility(retail, feed_in), tuple(zones), tuple(orders))
