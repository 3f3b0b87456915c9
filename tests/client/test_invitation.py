"""One pasted string carries the grid's address and the invitation code."""

from __future__ import annotations

import pytest

from grid_server.domain.registry import code_hash, new_invitation_code
from p2p_energy_client.invitation import (
    Invitation,
    InvitationError,
    format_invitation,
    normalise_code,
    parse_invitation,
)

CODE = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ"


@pytest.mark.parametrize(
    "url",
    ["https://grid.example.org", "https://grid.example.org/", "http://127.0.0.1:8000/p2p"],
)
def test_a_link_round_trips(url: str) -> None:
    link = format_invitation(url, CODE)
    assert link.endswith("/join#" + CODE)
    assert parse_invitation(link) == Invitation(url.rstrip("/"), CODE)


@pytest.mark.parametrize(
    "typed",
    [CODE, CODE.lower(), CODE.replace("-", ""), " ab cd-efgh ijkl mnop qrst uvwx yz ", "ABCD EFGH"],
)
def test_codes_are_read_however_they_are_typed(typed: str) -> None:
    parsed = parse_invitation(typed)
    assert parsed.grid_url is None
    assert parsed.code == normalise_code(typed)
    assert "-" in parsed.code or len(parsed.code) <= 4


def test_every_code_the_grid_issues_is_its_own_normal_form() -> None:
    for _ in range(50):
        code = new_invitation_code()
        assert normalise_code(code) == code
        assert code_hash(code.lower().replace("-", "")) == code_hash(code)
        assert parse_invitation(format_invitation("https://g.example", code)).code == code


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 3000, "too_long"),
        ("ABCD-EFG1", "invalid_code"),  # 1 is not base32
        ("https://grid.example.org/join", "missing_code"),
        ("https://grid.example.org/join#", "missing_code"),
        ("https://grid.example.org/#ABCD", "not_an_invitation"),
        ("ftp://grid.example.org/join#ABCD", "invalid_url"),
        ("https:///join#ABCD", "invalid_url"),
        ("https://grid.example.org/join?x=1#ABCD", "not_an_invitation"),
    ],
    ids=[
        "empty",
        "blank",
        "too-long",
        "not-base32",
        "no-fragment",
        "empty-fragment",
        "not-join",
        "not-http",
        "no-host",
        "query",
    ],
)
def test_what_is_not_an_invitation_is_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvitationError) as info:
        parse_invitation(text)
    assert info.value.reason == reason
