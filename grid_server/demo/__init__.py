"""The demo: a simulated neighbourhood trading in accelerated time against a real grid server.

* :mod:`.models`: solar (pvlib), household demand (demandlib's BDEW H0 profile)
  and batteries, deterministic with a seed.
* :mod:`.neighbourhood`: the households (who has what, in which zone) and their
  cumulative meters, advanced step by step.
* :mod:`.driver`: one simulated household running the integration's own
  Home-Assistant-free client (``p2p_energy_client.household.Household``).
* :mod:`.runner`: ``p2p-grid demo`` — the grid server in-process on an
  accelerated clock, the households, the live status line and the summary.

Importing this package needs the ``demo`` extra (pvlib, demandlib, pandas).
"""
