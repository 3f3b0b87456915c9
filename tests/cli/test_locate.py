"""How ``p2p-grid`` finds its grid, and that it never makes one where it should find one.

The config comes from ``--config``, ``P2P_CONFIG``, ``$XDG_CONFIG_HOME/p2p-grid/grid.toml``
or ``/etc/p2p-grid/grid.toml``, in that order; relative paths in it are relative to
it. Every command that works on an existing grid refuses, saying what to do, when
there is none where it looks, and leaves no file behind (before, ``p2p-grid invite``
in the wrong folder made a database and a ledger key there).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from grid_server.cli.main import main
from grid_server.cli.serve import start_notice
from grid_server.config import anchored_sqlite_url
from grid_server.storage.db import Database
from grid_server.storage.migrate import upgrade
from tests.cli.conftest import Places
from tests.support.operator_cli import first_start, write_config

ADDRESS = "0x" + "ab" * 32

# Every command that only makes sense on an existing grid, as an operator types it.
GRID_COMMANDS = [
    ["invite"],
    ["invite", "--revoke", "ABCD-EFGH"],
    ["participants", "list"],
    ["participants", "suspend", ADDRESS],
    ["intervals", "list"],
    ["intervals", "show", "2026-11-27T10:00:00Z"],
    ["prices", "2026-12-01T00:00:00Z", "0.3200", "0.0800"],
    ["zones", "feeder-2", "--parent", "street"],
    ["ledger", "show"],
    ["ledger", "mint", ADDRESS, "25"],
    ["ledger", "balances"],
    ["ledger", "verify"],
    ["ledger", "pay-producers"],
    ["audit", "verify"],
    ["audit", "roots"],
    ["audit", "receipt", "1"],
]


def files_under(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")}


# --- finding the config ---------------------------------------------------------------


def grid_of_invite(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The grid id an ``invite`` worked on (its explanation names it)."""
    assert main(["invite", "--no-qr", *args]) == 0
    err = capsys.readouterr().err
    return err.split("(", 1)[1].split(")", 1)[0]


def test_the_config_named_by_p2p_config(
    places: Places, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = first_start(write_config(places.root / "srv", grid_id="by-variable"))
    monkeypatch.setenv("P2P_CONFIG", str(config))
    assert grid_of_invite(capsys) == "by-variable"


def test_the_users_config_folder(places: Places, capsys: pytest.CaptureFixture[str]) -> None:
    first_start(write_config(places.user_config.parent, grid_id="in-xdg"))
    assert grid_of_invite(capsys) == "in-xdg"


def test_the_system_config(places: Places, capsys: pytest.CaptureFixture[str]) -> None:
    first_start(write_config(places.system_config.parent, grid_id="in-etc"))
    assert grid_of_invite(capsys) == "in-etc"


def test_which_config_wins(
    places: Places, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--config, then P2P_CONFIG, then the user's folder, then the system's."""
    first_start(write_config(places.system_config.parent, grid_id="in-etc"))
    first_start(write_config(places.user_config.parent, grid_id="in-xdg"))
    assert grid_of_invite(capsys) == "in-xdg"
    variable = first_start(write_config(places.root / "var", grid_id="by-variable"))
    monkeypatch.setenv("P2P_CONFIG", str(variable))
    assert grid_of_invite(capsys) == "by-variable"
    named = first_start(write_config(places.root / "named", grid_id="by-option"))
    assert grid_of_invite(capsys, "--config", str(named)) == "by-option"


@pytest.mark.parametrize(("how", "origin"), [("option", "--config"), ("variable", "P2P_CONFIG")])
def test_a_named_config_must_exist(
    how: str,
    origin: str,
    places: Places,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = places.root / "nowhere" / "grid.toml"
    args = ["participants", "list"]
    if how == "option":
        args += ["--config", str(missing)]
    else:
        monkeypatch.setenv("P2P_CONFIG", str(missing))
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        f"p2p-grid participants list: {origin} names {missing}, which is not a file"
    )
    assert files_under(places.root / "elsewhere") == set()


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            'public_url = "ftp://grid.example.org"',
            "grid.public_url: the grid's address must start with https:// "
            "(e.g. https://grid.example.org)",
        ),
        (
            'public_url = "https://grid.example.org/?x=1"',
            "grid.public_url: the grid's address has no ? or # part (e.g. https://grid.example.org)",
        ),
        ("interval_minutes = 7", "grid: interval length 7 min does not divide a day"),
        ("publicurl = 1", "grid.publicurl: Extra inputs are not permitted"),
        ("public_url = ", "not valid TOML (Invalid value (at line 4, column 14))"),
    ],
    ids=["scheme", "query", "interval", "typo", "toml"],
)
def test_a_bad_config_is_named_with_its_setting(
    line: str, problem: str, places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(places.root / "srv", public_url=None)
    config.write_text(config.read_text().replace("[grid]\n", f"[grid]\n{line}\n"))
    assert main(["invite", "--config", str(config)]) == 2
    assert capsys.readouterr().err.strip() == f"p2p-grid invite: {config}: {problem}"
    assert files_under(places.root / "srv") == {Path("grid.toml")}


@pytest.mark.parametrize(
    ("url", "anchored"),
    [
        ("sqlite:///grid.db", "sqlite:////srv/p2p/grid.db"),
        ("sqlite:///data/grid.db?timeout=5", "sqlite:////srv/p2p/data/grid.db?timeout=5"),
        ("sqlite:////var/lib/grid.db", "sqlite:////var/lib/grid.db"),
        ("grid.db", "/srv/p2p/grid.db"),
        ("/var/lib/grid.db", "/var/lib/grid.db"),
        ("postgresql://p2p@db/grid", "postgresql://p2p@db/grid"),
    ],
)
def test_relative_database_paths_are_relative_to_the_config(url: str, anchored: str) -> None:
    assert anchored_sqlite_url(url, Path("/srv/p2p")) == anchored


# --- refusing without a grid -------------------------------------------------------------


@pytest.mark.parametrize("command", GRID_COMMANDS, ids=" ".join)
def test_no_config_no_grid(
    command: list[str], places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run in an empty folder without a config: refused, and nothing is made there."""
    assert main(command) == 2
    err = capsys.readouterr().err
    assert f"there is no grid database at {places.cwd / 'p2p-grid.db'}" in err
    assert "It read no config file (none given with --config or P2P_CONFIG; none at" in err
    assert "never creates one" in err and "--config /path/to/grid.toml" in err
    assert files_under(places.cwd) == set()


def _missing_database(places: Places) -> tuple[Path, str]:
    config = write_config(places.root / "srv")
    return config, f"there is no grid database at {places.root / 'srv' / 'grid.db'}"


def _empty_database(places: Places) -> tuple[Path, str]:
    """Migrated (``p2p-grid migrate``) but never served: no grid in it yet."""
    config = write_config(places.root / "srv")
    db = Database(f"sqlite:///{places.root / 'srv' / 'grid.db'}")

    async def migrate() -> None:
        await upgrade(db)
        await db.dispose()

    asyncio.run(migrate())
    return config, "holds no grid (a grid is made by its first `p2p-grid serve`)"


def _another_grid(places: Places) -> tuple[Path, str]:
    """The config's [grid] id is not the grid in the database (a copied or edited config)."""
    first_start(write_config(places.root / "srv", grid_id="our-street"))
    config = write_config(places.root / "srv", grid_id="other-street")
    return config, "holds the grid 'our-street', not 'other-street' (the config's [grid] id)"


@pytest.mark.parametrize(
    ("command", "situation"),
    [
        pytest.param(command, situation, id=f"{' '.join(command)}-{situation.__name__[1:]}")
        for situation in (_missing_database, _empty_database, _another_grid)
        for command in GRID_COMMANDS
        # verify checks whichever grid the database holds (--grid picks one of several)
        if not (command == ["audit", "verify"] and situation is _another_grid)
    ],
)
def test_the_config_names_no_grid(
    command: list[str],
    situation: object,
    places: Places,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, problem = situation(places)  # type: ignore[operator]
    before = files_under(places.root / "srv")
    assert main([*command, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert problem in err
    assert f"It read the config {config} (from --config)" in err
    assert files_under(places.root / "srv") == before
    assert files_under(places.cwd) == set()


def test_commands_that_need_the_ledger_key_never_make_one(
    places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    config = first_start(write_config(places.root / "srv"))
    key = places.root / "srv" / "p2p-grid-ledger.key"
    key.unlink()  # the key is elsewhere (P2P_LEDGER_KEY on the server), not given here
    assert main(["ledger", "show", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"p2p-grid ledger show: no ledger key: set P2P_LEDGER_KEY or create {key}" in err
    assert not key.exists()
    # Commands that do not pay or sign do not need it.
    assert main(["participants", "list", "--config", str(config)]) == 0
    assert not key.exists()


# --- serve and migrate -------------------------------------------------------------------


def test_serve_refuses_another_grids_database(
    places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    _, problem = _another_grid(places)
    config = places.root / "srv" / "grid.toml"
    assert main(["serve", "--config", str(config)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"p2p-grid serve: {
            problem.replace(
                'holds', f'the SQLite database {places.root / "srv" / "grid.db"} holds', 1
            )
        }; not starting"
    )


def test_serve_says_when_it_makes_a_grid(places: Places) -> None:
    from grid_server.cli.locate import DatabaseState, Located  # noqa: PLC0415
    from grid_server.config import ConfigChoice, load_settings  # noqa: PLC0415

    config = write_config(places.root / "srv")
    found = Located(load_settings(config), ConfigChoice(config, "--config"))
    where = f"the SQLite database {places.root / 'srv' / 'grid.db'}"
    new = DatabaseState(where, missing="there is no grid database")
    assert start_notice(found, new) == (
        f"p2p-grid serve: a new grid 'our-street' in {where}; its ledger key and operator "
        "token are made next to it (back them up)"
    )
    assert start_notice(found, DatabaseState(where, ("our-street",))) is None
    bare = Located(load_settings(None), ConfigChoice(None, "none", (Path("/x/grid.toml"),)))
    assert start_notice(bare, DatabaseState(where, ("grid-1",))) == (
        "p2p-grid serve: no config file (none given with --config or P2P_CONFIG; none at "
        "/x/grid.toml): serving the built-in example grid"
    )


def test_migrate_says_when_the_database_is_new(
    places: Places, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(places.root / "srv")
    assert main(["migrate", "--config", str(config)]) == 0
    database = places.root / "srv" / "grid.db"
    assert capsys.readouterr().out.strip() == (
        f"the SQLite database {database} is at the newest schema (a new, empty database: "
        "`p2p-grid serve` makes the grid in it)"
    )
    assert main(["migrate", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"the SQLite database {database} is at the newest schema"
    )
