"""Configuration of a grid server: process settings and the grid's own parameters.

Two layers:

* :class:`Settings` (pydantic-settings): how this process runs. Environment
  variables prefixed ``P2P_`` (``P2P_DATABASE_URL``, ``P2P_OPERATOR_TOKEN``,
  ``P2P_CONFIG`` …) or the ``[server]`` table of the config file; command-line
  options of ``p2p-grid serve`` override both.
* :class:`GridConfig`: what the grid is (id, currency, interval length,
  gate closure, settlement window and period, utility prices, zones, ledger,
  the meters it believes),
  from the TOML config file (see ``examples/grid.toml``). The file *seeds* the
  database: zones and price steps missing from the database are added at
  start; after that the operator API/CLI changes them and the database is
  authoritative.

``p2p-grid`` finds the file with :func:`find_config` (``--config``,
``P2P_CONFIG``, ``$XDG_CONFIG_HOME/p2p-grid/grid.toml``,
``/etc/p2p-grid/grid.toml``); relative paths in it (a SQLite database, the
ledger key file) are relative to the file, so every command that reads it
finds the same grid wherever it runs. Errors are :class:`ConfigError`, naming
the file and the setting.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from grid_server.domain.approval import ApprovalLimits
from grid_server.domain.plausibility import BatteryRule, Rules
from p2p_energy_client.crypto import is_address
from p2p_energy_client.invitation import InvitationError, check_grid_url
from p2p_energy_client.models import SHARING_OFF, SharingInfo
from p2p_energy_client.protocol import MAX_BODY_BYTES, MAX_ENERGY_WH, LedgerKind, check_id
from p2p_energy_client.units import (
    UnitError,
    check_interval_minutes,
    is_interval_start,
    parse_price,
    parse_rate,
    parse_utc,
    rate_from_price,
)

if TYPE_CHECKING:  # the domain (numpy, pvlib) loads only when a grid builds its rules
    from grid_server.domain.approval import ApprovalLimits
    from grid_server.domain.clear_sky import SolarMargins
    from grid_server.domain.plausibility import BatteryRule, Rules
    from grid_server.domain.sharing import AllocationKey, SharingRule

DEFAULT_SQLITE = "sqlite:///p2p-grid.db"


class PriceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    effective_from: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    retail: str
    feed_in: str

    @field_validator("effective_from", mode="before")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_utc(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("effective_from must be UTC (end it with Z)")
        return value

    @model_validator(mode="after")
    def _prices(self) -> PriceConfig:
        try:
            retail, feed_in = parse_price(self.retail), parse_price(self.feed_in)
        except UnitError as exc:
            raise ValueError(str(exc)) from exc
        if feed_in < 0 or retail < feed_in:
            raise ValueError("prices need 0 <= feed_in <= retail")
        return self


class ZoneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str | None = None
    parent: str | None = None
    fee: str = "0"
    capacity_up_wh: int | None = Field(default=None, ge=0)
    capacity_down_wh: int | None = Field(default=None, ge=0)

    @field_validator("id", "parent")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "zone")

    @field_validator("fee")
    @classmethod
    def _fee(cls, value: str) -> str:
        if parse_price(value) < 0:
            raise ValueError("fee must not be negative")
        return value


class IotaNodeConfig(BaseModel):
    """Where the grid's IOTA node is (``[grid.ledger.iota]``) and how long to wait for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # mainnet, testnet, devnet or localnet: the IOTA Foundation's node (or
    # localhost:9000) unless ``url`` names another.
    network: Literal["mainnet", "testnet", "devnet", "localnet"] | None = None
    url: str | None = None
    # A node households may use, published in GET /api/v1/grid (default: none).
    public_url: str | None = None
    request_timeout: float = Field(default=10.0, gt=0)
    execute_timeout: float = Field(default=30.0, gt=0)
    submit_deadline: float = Field(default=120.0, gt=0)
    checkpoint_timeout: float = Field(default=60.0, gt=0)
    poll_interval: float = Field(default=0.25, gt=0)
    # Kept back from payouts to pay their gas.
    gas_reserve_nanos: int = Field(default=100_000_000, ge=0)


class LedgerConfig(BaseModel):
    """How the grid takes payments and pays producers (``[grid.ledger]``).

    See docs/operators/payments.md. The grid's own key is a process
    setting (``P2P_LEDGER_KEY`` / ``P2P_LEDGER_KEY_FILE``), never stored here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: LedgerKind = LedgerKind.LOCAL
    # Optional: the grid's ledger address; start-up fails if the key's differs.
    address: str | None = None
    # The rate for statements: ledger units per micro-unit of the currency, an
    # exact fraction ("1", "4000", "10000000/2137"). Default 1 on the local
    # ledger; with IOTA give this or ``iota_price`` (currency units per IOTA).
    rate: str | None = None
    iota_price: str | None = None
    # A pluggable rate source, "package.module:factory" (called with this config).
    rate_source: str | None = None
    # collected: pay producers in proportion to what that period's consumers
    # paid; float: pay them at once from the grid's balance.
    payout_policy: Literal["collected", "float"] = "collected"
    # Pay a producer once at least this much (micro-units) is payable to it.
    payout_threshold_micro: int = Field(default=1_000_000, ge=0)
    # How often the payout worker looks for work (it is also woken by payments).
    payout_interval_seconds: float = Field(default=60.0, gt=0)
    # A statement owed to the grid is overdue this long after it was issued.
    payment_terms_seconds: int = Field(default=7 * 86_400, ge=0)
    # retail_only: buy orders of a participant with overdue statements are
    # refused (error ``overdue``); it buys at the retail price meanwhile.
    overdue_policy: Literal["none", "retail_only"] = "none"
    iota: IotaNodeConfig = IotaNodeConfig()

    @model_validator(mode="after")
    def _ledger(self) -> LedgerConfig:
        if self.address is not None and not is_address(self.address):
            raise ValueError("ledger.address must be 0x and 64 lowercase hex digits")
        try:
            if self.rate is not None:
                parse_rate(self.rate)
            if self.iota_price is not None:
                rate_from_price(self.iota_price)
        except ValueError as exc:
            raise ValueError(f"ledger rate: {exc}") from exc
        if self.rate is not None and self.iota_price is not None:
            raise ValueError("give ledger.rate or ledger.iota_price, not both")
        if self.kind is LedgerKind.IOTA:
            if self.iota.url is None and self.iota.network is None:
                raise ValueError("the iota ledger needs [grid.ledger.iota] url or network")
            if self.rate is None and self.iota_price is None and self.rate_source is None:
                raise ValueError("the iota ledger needs ledger.iota_price, rate or rate_source")
        return self


class AuditConfig(BaseModel):
    """The audit trail (``[grid.audit]``): anchoring interval roots on IOTA.

    With the IOTA ledger, roots are anchored through IOTA Notarization once
    ``anchor_every`` roots are waiting (all waiting roots go in one batch).
    ``notarization_package`` defaults to the package published on the
    ledger's network (mainnet, testnet, devnet); give it for a local network.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    anchor: bool = True
    anchor_every: int = Field(default=1, ge=1, le=1000)
    notarization_package: str | None = None

    @field_validator("notarization_package")
    @classmethod
    def _package(cls, value: str | None) -> str | None:
        if value is not None and not is_address(value):
            raise ValueError("notarization_package must be 0x and 64 lowercase hex digits")
        return value


class ApprovalLimitsConfig(BaseModel):
    """What a household may declare without the operator's approval (``[grid.meters.approval]``).

    Ratings are the AC power of a source (a PV inverter's output, a battery's
    charge/discharge limit) or of a consumer meter's circuit. Above a limit
    the asset waits for the operator; above the absolute maximum it is
    refused. Defaults fit homes (docs/operators/meters.md says why).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Rooftop PV: homes have 5-15 kWp; 30 kWp is the top of residential
    # (Germany treats rooftop PV up to 30 kWp on homes as a small system).
    solar_w: int = Field(default=30_000, ge=0)
    # Small domestic turbines: 1-10 kW.
    wind_w: int = Field(default=10_000, ge=0)
    # Home batteries: 3-11.5 kW (a Tesla Powerwall 3 gives 11.5 kW) ...
    battery_w: int = Field(default=12_000, ge=0)
    # ... and 5-20 kWh usable; two stacked units reach ~27 kWh.
    battery_capacity_wh: int = Field(default=30_000, ge=0)
    # Micro-CHP (1-5 kW electric), fuel cells, small generators.
    other_w: int = Field(default=10_000, ge=0)
    # A consumer meter's circuit: heat pumps 2-6 kW, wallboxes 11-22 kW, a
    # whole house behind a 3 x 63 A connection 43 kW.
    meter_w: int = Field(default=43_000, ge=0)
    # Nobody, not even with the operator's approval: a neighbourhood's
    # transformer carries 0.4-1 MVA.
    absolute_power_w: int = Field(default=1_000_000, ge=1, le=10**9)
    absolute_capacity_wh: int = Field(default=4_000_000, ge=1, le=MAX_ENERGY_WH)

    @model_validator(mode="after")
    def _within_absolute(self) -> ApprovalLimitsConfig:
        for name in ("solar_w", "wind_w", "battery_w", "other_w", "meter_w"):
            if getattr(self, name) > self.absolute_power_w:
                raise ValueError(f"meters.approval.{name} must not exceed absolute_power_w")
        if self.battery_capacity_wh > self.absolute_capacity_wh:
            raise ValueError(
                "meters.approval.battery_capacity_wh must not exceed absolute_capacity_wh"
            )
        return self

    def limits(self) -> ApprovalLimits:

        return ApprovalLimits(
            solar_w=self.solar_w,
            wind_w=self.wind_w,
            battery_w=self.battery_w,
            battery_capacity_wh=self.battery_capacity_wh,
            other_w=self.other_w,
            meter_w=self.meter_w,
            absolute_power_w=self.absolute_power_w,
            absolute_capacity_wh=self.absolute_capacity_wh,
        )


class LocationConfig(BaseModel):
    """Where the grid is (``[grid.meters.location]``): the sun's path over it bounds PV."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    latitude: float = Field(ge=-90, le=90)  # degrees north
    longitude: float = Field(ge=-180, le=180)  # degrees east
    altitude_m: float = Field(default=0.0, ge=-500, le=9_000)  # above sea level


class SolarRuleConfig(BaseModel):
    """How far above clear sky a PV reading is believed (``[grid.meters.solar]``).

    The bound per W of approved rating is ``cloud_enhancement × cold_cell_gain
    × dc_ac_ratio × (DNI + DHI + ground_reflectance × GHI) / 1000 W/m²`` under
    an Ineichen clear sky of ``linke_turbidity``, at least ``twilight_irradiance``
    in civil twilight (see grid_server/domain/clear_sky.py).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Very clean, dry air (Central Europe's climatology is 3-6): more light.
    linke_turbidity: float = Field(default=2.0, ge=1.0, le=7.0)
    # Half the ground (a vertical plane's view) over fresh snow (~0.9).
    ground_reflectance: float = Field(default=0.5, ge=0.0, le=1.0)
    # Cloud edges focus sunlight: minutes at up to ~1.5 x clear sky.
    cloud_enhancement: float = Field(default=1.5, ge=1.0, le=3.0)
    # Cells at -25 °C instead of 25 °C, at -0.4 %/K: +20 %.
    cold_cell_gain: float = Field(default=1.2, ge=1.0, le=2.0)
    # Panel peak power over the (AC) rating: inverters carry up to 1.5 x.
    dc_ac_ratio: float = Field(default=1.5, ge=1.0, le=3.0)
    # Sky light while the sun is less than 6° below the horizon (W/m²).
    twilight_irradiance: float = Field(default=10.0, ge=0.0, le=100.0)
    # The envelope's time grid (an upper sum over its cells).
    sample_seconds: int = Field(default=300, ge=1, le=3_600)

    @field_validator("sample_seconds")
    @classmethod
    def _divides_day(cls, value: int) -> int:
        if 86_400 % value:
            raise ValueError("meters.solar.sample_seconds must divide a day")
        return value

    def margins(self) -> SolarMargins:
        from grid_server.domain.clear_sky import SolarMargins  # noqa: PLC0415 - pvlib, when used

        return SolarMargins(
            linke_turbidity=self.linke_turbidity,
            ground_reflectance=self.ground_reflectance,
            cloud_enhancement=self.cloud_enhancement,
            cold_cell_gain=self.cold_cell_gain,
            dc_ac_ratio=self.dc_ac_ratio,
            twilight_irradiance=self.twilight_irradiance,
            sample_seconds=self.sample_seconds,
        )


class BatteryRuleConfig(BaseModel):
    """How batteries are checked (``[grid.meters.battery]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Discharge <= this x charge + capacity. 1 is energy conservation, right
    # for every battery and meter (AC or DC side); real ones give 0.85-0.95.
    round_trip_efficiency: float = Field(default=1.0, gt=0.0, le=1.0)
    # Without a linked charge meter: at most this many full capacities a day.
    unlinked_cycles_per_day: float = Field(default=3.0, gt=0.0, le=48.0)
    # Without a declared capacity: this many hours of its rated power.
    fallback_hours: float = Field(default=4.0, gt=0.0, le=48.0)

    def rule(self) -> BatteryRule:

        return BatteryRule(
            round_trip_efficiency=self.round_trip_efficiency,
            unlinked_cycles_per_day=self.unlinked_cycles_per_day,
            fallback_hours=self.fallback_hours,
        )


class MetersConfig(BaseModel):
    """Meters we can believe (``[grid.meters]``): approval limits and plausibility rules.

    See docs/operators/meters.md. Without ``location`` the grid cannot
    compute the sun: solar sources are then held to their rating only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    approval: ApprovalLimitsConfig = ApprovalLimitsConfig()
    location: LocationConfig | None = None
    # A reading may hold energy from this long outside its interval (meters
    # update every few minutes; the integration books late energy forward).
    clock_skew_seconds: int = Field(default=300, ge=0, le=3_600)
    solar: SolarRuleConfig = SolarRuleConfig()
    battery: BatteryRuleConfig = BatteryRuleConfig()

    def rules(self, household_max_power_w: int) -> Rules:
        """The plausibility rules (the clear-sky envelope only with a location)."""

        solar = None
        if self.location is not None:
            from grid_server.domain.clear_sky import ClearSkyEnvelope, Site  # noqa: PLC0415 - pvlib

            site = Site(self.location.latitude, self.location.longitude, self.location.altitude_m)
            solar = ClearSkyEnvelope(site, self.solar.margins())
        return Rules(
            clock_skew_seconds=self.clock_skew_seconds,
            unrated_power_w=household_max_power_w,
            battery=self.battery.rule(),
            solar=solar,
        )


class SharingConfig(BaseModel):
    """Sharing after delivery (``[grid.sharing]``), off unless ``enabled``.

    Deviations from the traded positions are first shared between neighbours
    (``docs/developers/sharing.md``): ``key`` divides shared energy
    (``proportional`` to the deviation, ``dynamic`` by metered consumption and
    production, ``static`` by ``static_shares``: participant address to
    weight); a shortfall pays the clearing price plus ``shortfall_share`` of
    the gap to retail, a surplus earns it minus ``surplus_share`` of the gap to
    feed-in (decimals in [0, 1]).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    key: str = "proportional"
    shortfall_share: str = "0.5"
    surplus_share: str = "0.5"
    static_shares: dict[str, int] = Field(default_factory=dict)

    # The domain's names and bounds are imported where they are checked: the
    # domain loads the market engine (NumPy, SciPy), which a process reading
    # its configuration without sharing should not pay for.
    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        from grid_server.domain.sharing import ALLOCATION_KEYS  # noqa: PLC0415 - NumPy, when used

        if value not in ALLOCATION_KEYS:
            raise ValueError(f"must be one of {', '.join(ALLOCATION_KEYS)}, not {value!r}")
        return value

    @field_validator("shortfall_share", "surplus_share", mode="before")
    @classmethod
    def _share(cls, value: Any) -> Any:
        # TOML gives 0.5 as a float; its shortest repr is what the operator wrote.
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = repr(value)
        if isinstance(value, str):
            try:
                share = Decimal(value)
            except InvalidOperation as exc:
                raise ValueError(f"{value!r} is not a decimal number") from exc
            if not share.is_finite() or not 0 <= share <= 1:
                raise ValueError(f"must be within [0, 1], not {value}")
        return value

    @field_validator("static_shares")
    @classmethod
    def _weights(cls, value: dict[str, int]) -> dict[str, int]:
        from grid_server.domain.sharing import MAX_STATIC_WEIGHT  # noqa: PLC0415 - NumPy, when used

        for address, weight in value.items():
            if not is_address(address):
                raise ValueError(f"{address!r} is not a participant address (0x and 64 hex digits)")
            if not 0 <= weight <= MAX_STATIC_WEIGHT:
                raise ValueError(f"{address}: weight must be within [0, {MAX_STATIC_WEIGHT}]")
        return value

    @model_validator(mode="after")
    def _rule(self) -> SharingConfig:
        if self.key == "static" and not any(self.static_shares.values()):
            raise ValueError("sharing.static_shares: the static key needs a positive weight")
        if self.key != "static" and self.static_shares:
            raise ValueError(
                f"sharing.static_shares: apply only to key = 'static', not {self.key!r}"
            )
        return self

    def info(self) -> SharingInfo:
        """What ``/grid`` announces and each settlement entry records."""
        if not self.enabled:
            return SHARING_OFF
        return SharingInfo(
            True, self.key, self.shortfall_share, self.surplus_share, dict(self.static_shares)
        )

    def rule(self) -> SharingRule | None:
        """The domain's rule, or None when sharing is off."""
        from grid_server.domain.sharing import SharingRule  # noqa: PLC0415 - NumPy, when used

        if not self.enabled:
            return None
        return SharingRule(
            key=cast("AllocationKey", self.key),
            shortfall_share=Fraction(Decimal(self.shortfall_share)),
            surplus_share=Fraction(Decimal(self.surplus_share)),
            static_shares=dict(self.static_shares),
        )


class GridConfig(BaseModel):
    """The grid's parameters (the ``[grid]`` part of the config file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = "grid-1"
    name: str = "Neighbourhood grid"
    # The address households reach this server at (``https://grid.example.org``,
    # with any path prefix a reverse proxy adds): invitation links begin with it.
    public_url: str | None = None
    currency: str = "EUR"
    interval_minutes: int = 15
    gate_closure_seconds: int = Field(default=300, ge=0)
    # Readings are accepted until this long after an interval ends. A day and
    # an hour, so a household that was offline for a whole day still gets
    # every reading settled (ARCHITECTURE: an outage of a day loses nothing);
    # statements for a day therefore come out the day after next.
    settlement_window_seconds: int = Field(default=90_000, ge=0)
    settlement_period_seconds: int = Field(default=86_400, gt=0)
    order_horizon_seconds: int = Field(default=48 * 3600, gt=0)
    # Buy orders of a household without declared consumer meter power are
    # bounded by this power over the interval.
    household_max_power_w: int = Field(default=43_000, gt=0)
    default_zone: str | None = None
    prices: tuple[PriceConfig, ...] = (PriceConfig(retail="0.3000", feed_in="0.0800"),)
    zones: tuple[ZoneConfig, ...] = (ZoneConfig(id="root"),)
    ledger: LedgerConfig = LedgerConfig()
    audit: AuditConfig = AuditConfig()
    meters: MetersConfig = MetersConfig()
    sharing: SharingConfig = SharingConfig()

    @field_validator("id")
    @classmethod
    def _grid_id(cls, value: str) -> str:
        return check_id(value, "grid.id")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_grid_url(value)
        except InvitationError as exc:
            raise ValueError(f"{exc} (e.g. https://grid.example.org)") from exc

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if len(value) != 3 or not value.isascii() or not value.isupper():
            raise ValueError("currency must be an ISO 4217 code such as EUR")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> GridConfig:
        # In this order: the timing checks need a valid interval length, and
        # the first problem found is the one reported.
        self._check_timing()
        self._check_zone_tree()
        self._check_price_starts()
        return self

    def _check_timing(self) -> None:
        """The interval is valid and the settlement period and gate closure fit it."""
        try:
            check_interval_minutes(self.interval_minutes)
        except UnitError as exc:
            raise ValueError(str(exc)) from exc
        length = self.interval_minutes * 60
        if self.settlement_period_seconds % length:
            raise ValueError("settlement_period_seconds must be a multiple of the interval")
        # Periods are counted from the Unix epoch (Schedule.period_start):
        # dividing a day or being whole days puts their boundaries on UTC
        # midnights instead of drifting through the day from one to the next.
        if 86_400 % self.settlement_period_seconds and self.settlement_period_seconds % 86_400:
            raise ValueError("settlement_period_seconds must divide a day or be whole days")
        if self.gate_closure_seconds >= self.order_horizon_seconds:
            raise ValueError("gate closure must be shorter than the order horizon")

    def _check_zone_tree(self) -> None:
        """The zones form one tree (unique ids, one root, known parents); default_zone is one."""
        ids = [z.id for z in self.zones]
        if not ids:
            raise ValueError("at least one zone is needed")
        if len(set(ids)) != len(ids):
            raise ValueError("zone ids must be unique")
        roots = [z for z in self.zones if z.parent is None]
        if len(roots) != 1:
            raise ValueError("exactly one zone (the root) has no parent")
        for zone in self.zones:
            if zone.parent is not None and zone.parent not in ids:
                raise ValueError(f"zone {zone.id!r}: unknown parent {zone.parent!r}")
        if self.default_zone is not None and self.default_zone not in ids:
            raise ValueError(f"default_zone {self.default_zone!r} is not a zone")

    def _check_price_starts(self) -> None:
        """Every price takes effect at an interval start, so no interval has two prices."""
        for price in self.prices:
            if not is_interval_start(price.effective_from, self.interval_minutes):
                raise ValueError("price effective_from must be an interval start")

    @property
    def root_zone(self) -> str:
        return next(z.id for z in self.zones if z.parent is None)

    @property
    def join_zone(self) -> str:
        return self.default_zone or self.root_zone

    def meter_rules(self) -> Rules:
        """The plausibility rules of this grid's meters (build once: it caches the sun)."""
        return self.meters.rules(self.household_max_power_w)


class Settings(BaseSettings):
    """How this server process runs (``P2P_*`` environment variables)."""

    model_config = SettingsConfigDict(env_prefix="P2P_", extra="ignore")

    database_url: str = DEFAULT_SQLITE
    config: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    operator_token: str | None = None
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    session_ttl_seconds: int = 3600
    # Rate limits: a token bucket per member key and one per client address
    # (requests per second, burst). A household sends a few envelopes a
    # minute (more when it catches up after an outage); an address may hide
    # a few households behind one NAT. Raise them for load tests (the ingest
    # benchmark and the demo do), never for a public host without thought.
    rate_per_key: float = 2.0
    burst_per_key: int = 30
    rate_per_address: float = 50.0
    burst_per_address: int = 500
    # Envelopes refused because their key is no member, per address: an
    # outsider's flood costs one lookup each until this runs out, then nothing.
    refusals_per_address: float = 1.0
    refusal_burst_per_address: int = 20
    # Failed joins (wrong invitation codes) per address: brute force guard.
    join_failures_per_hour: int = 20
    # Wrong operator tokens (bearer or dashboard login) per address.
    auth_failures_per_hour: int = 20
    # Request bodies: signed envelopes and payments may have ``max_body_bytes``
    # (the protocol's limit, 1 MiB); a street's onboarding (many households'
    # joins, read only after the operator token is checked)
    # ``max_onboard_body_bytes``; every other route ``max_small_body_bytes``.
    # A body not received within ``body_timeout_seconds`` is refused (408).
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1024, le=MAX_BODY_BYTES)
    max_onboard_body_bytes: int = Field(default=16 * MAX_BODY_BYTES, ge=1024)
    max_small_body_bytes: int = Field(default=65_536, ge=1024, le=MAX_BODY_BYTES)
    body_timeout_seconds: float = Field(default=10.0, gt=0)
    # Live streams (WebSockets) open at once: per participant and in total.
    max_streams_per_participant: int = Field(default=4, ge=1)
    max_streams: int = Field(default=1000, ge=1)
    # /docs, Swagger UI served from the grid's own files (grid_server/api/docs.py);
    # off by default (the OpenAPI document itself is always at /openapi.json).
    api_docs: bool = False
    writer_max_batch: int = 512
    # The grid's ledger key (its account; signs payouts): a 32-byte hex seed or
    # an ``iotaprivkey1…`` secret. Or a file holding one; by default
    # ``p2p-grid-ledger.key`` next to the SQLite database (the working
    # directory for PostgreSQL), created with mode 0600 on first start.
    ledger_key: SecretStr | None = None
    ledger_key_file: Path | None = None
    run_cycle: bool = True
    migrate_on_start: bool = True
    # Test-only, off by default (tests/production): grid time read from this
    # file, so several worker processes share a clock the test moves
    # (``grid_server.domain.clock.FileClock``) ...
    test_clock_file: Path | None = None
    # ... and named points where the process halts so a test can kill -9 it
    # there (``grid_server.service.faults``). Never set these in production.
    test_faults: str | None = None
    test_fault_dir: Path | None = None
    grid: GridConfig = GridConfig()


class ConfigError(ValueError):
    """The grid's config cannot be used: a file that is missing or unreadable, or a setting
    that is invalid (the message names the file and the setting)."""


# Where ``p2p-grid`` looks for the grid's config when no ``--config`` is given:
# ``P2P_CONFIG``, then the operator's own config folder, then the system's.
CONFIG_ENV: Final = "P2P_CONFIG"
CONFIG_IN_FOLDER: Final = Path("p2p-grid") / "grid.toml"
SYSTEM_CONFIG: Final = Path("/etc/p2p-grid/grid.toml")


@dataclass(frozen=True, slots=True)
class ConfigChoice:
    """The config file a command uses (None: none found) and how it was found."""

    path: Path | None
    origin: str  # "--config", "P2P_CONFIG", "default location" or "none"
    searched: tuple[Path, ...] = ()


def default_config_paths(environ: Mapping[str, str]) -> tuple[Path, ...]:
    """``$XDG_CONFIG_HOME/p2p-grid/grid.toml`` (``~/.config`` by default), then ``/etc``."""
    home = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return (Path(home) / CONFIG_IN_FOLDER, SYSTEM_CONFIG)


def find_config(explicit: Path | None, environ: Mapping[str, str]) -> ConfigChoice:
    """The grid's config: ``explicit`` (``--config``), ``P2P_CONFIG``, or the first default
    location that exists. A file named explicitly or by the variable must exist."""
    named = (explicit, "--config") if explicit is not None else (None, "")
    if named[0] is None and environ.get(CONFIG_ENV):
        named = (Path(environ[CONFIG_ENV]), CONFIG_ENV)
    path, origin = named
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"{origin} names {path}, which is not a file")
        return ConfigChoice(path.resolve(), origin)
    searched = default_config_paths(environ)
    for candidate in searched:
        if candidate.is_file():
            return ConfigChoice(candidate.resolve(), "default location", searched)
    return ConfigChoice(None, "none", searched)


def anchored_sqlite_url(url: str, folder: Path) -> str:
    """A relative SQLite path (``sqlite:///grid.db``, ``grid.db``) made absolute under
    ``folder``; any other URL unchanged. A config file's relative paths are relative to the
    file, so every command that reads it finds the same database wherever it runs."""
    if "://" not in url:
        return url if Path(url).is_absolute() else str(folder / url)
    scheme, rest = url.split("://", 1)
    path, query_mark, query = rest.removeprefix("/").partition("?")
    if not scheme.startswith("sqlite") or not rest.startswith("/") or not path:
        return url
    if path.startswith("/") or path == ":memory:":
        return url
    return f"{scheme}:///{folder / path}{query_mark}{query}"


def _file_settings(path: Path) -> dict[str, Any]:
    """The ``[server]`` and ``[grid]`` tables of a config file, its relative paths anchored."""
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    data: dict[str, Any] = dict(raw.get("server", {}))
    folder = path.resolve().parent
    if isinstance(data.get("database_url"), str):
        data["database_url"] = anchored_sqlite_url(data["database_url"], folder)
    if isinstance(data.get("ledger_key_file"), str):
        data["ledger_key_file"] = folder / data["ledger_key_file"]
    data["grid"] = raw.get("grid", {})
    data["config"] = path
    return data


def load_settings(config_path: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, the config file (``[server]``, ``[grid]``) and overrides.

    Relative paths in the file (a SQLite database, the ledger key file) are relative to the
    file. :class:`ConfigError` names the file and the setting at fault.
    """
    try:
        base = Settings()
    except ValidationError as exc:
        raise ConfigError(_problems("P2P_* environment variables", exc)) from exc
    path = Path(config_path) if config_path is not None else base.config
    data = _file_settings(path) if path is not None else {}
    env_set = {k for k in Settings.model_fields if f"P2P_{k.upper()}" in _environ()}
    merged = {k: v for k, v in data.items() if k not in env_set}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_problems(str(path) if path else "settings", exc)) from exc


def _problems(where: str, exc: ValidationError) -> str:
    """``where: grid.public_url: why; …`` from pydantic's errors."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(x) for x in error["loc"]) or "settings"
        parts.append(f"{field}: {error['msg'].removeprefix('Value error, ')}")
    return f"{where}: " + "; ".join(parts)


def _environ() -> dict[str, str]:
    import os  # noqa: PLC0415 - only for the precedence rule above

    return dict(os.environ)
