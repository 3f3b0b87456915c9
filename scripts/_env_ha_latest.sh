# The second test environment: the integration's tests on the newest Home
# Assistant these machines can run. Sourced by scripts/test-ha-latest, not
# executed; sets HA_VENV and puts its bin/ first on PATH.
#
# The main environment (.venv, scripts/_env.sh) runs everything on the
# oldest release we support: Home Assistant 2025.4.4 on pyenv's Python 3.13.0,
# with pyproject.toml's exact pins. This one, in .venv-ha-latest (git-ignored;
# P2P_HA_LATEST_VENV moves it), holds:
#
# * CPython 3.13.5 built from Debian trixie's source package by
#   scripts/build-cpython (Home Assistant 2026.2 needs Python >= 3.13.2; 2026.3
#   and later need 3.14, which these machines cannot get), built once per
#   machine (about two minutes) and shared by every clone;
# * pytest-homeassistant-custom-component==0.13.316, which pins Home Assistant
#   2026.2.3 and the test harness for it;
# * the project with `pip install --no-deps -e .` and its dependencies from
#   scripts/ha_latest_requirements.py: our pins dropped where Home Assistant
#   pins the package (aiohttp, cryptography, numpy, orjson, pydantic,
#   SQLAlchemy), constrained by Home Assistant's package_constraints.txt and
#   by the harness's installed versions; our pins kept everywhere else; and
#   Home Assistant's frontend at the version it pins (a real Home Assistant
#   process, tests/integration/test_real_home_assistant.py, needs it).
#   `pip check` must then find nothing broken but those dropped pins.
#
# It installs again only when pyproject.toml or one of these scripts changes
# (a stamp in the environment), and creates the environment afresh when its
# interpreter is gone or broken. First install: a few minutes (mostly
# downloads; pip's cache makes later ones faster).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HA_VENV="${P2P_HA_LATEST_VENV:-$ROOT/.venv-ha-latest}"
HA_TEST_HARNESS="pytest-homeassistant-custom-component==0.13.316"  # Home Assistant 2026.2.3

python="$("$ROOT/scripts/build-cpython")"
if ! "$HA_VENV/bin/python" -c 'import sys, ssl, sqlite3; assert sys.version_info[:3] == (3, 13, 5)' \
  >/dev/null 2>&1; then
  rm -rf "$HA_VENV"
  "$python" -m venv "$HA_VENV"
  "$HA_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip==26.3
fi

stamp="$HA_VENV/.p2p-installed"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/_env_ha_latest.sh" \
  "$ROOT/scripts/ha_latest_requirements.py" | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "Installing Home Assistant 2026.2.3 ($HA_TEST_HARNESS) and p2p_energy into $HA_VENV ..." >&2
  pip=("$HA_VENV/bin/python" -m pip --disable-pip-version-check)
  started=$SECONDS
  rm -f "$stamp"
  "${pip[@]}" install --quiet "$HA_TEST_HARNESS"
  echo "p2p_energy's pins that give way to Home Assistant's:" >&2
  "$HA_VENV/bin/python" "$ROOT/scripts/ha_latest_requirements.py" "$ROOT" "$HA_VENV"
  "${pip[@]}" install --quiet -c "$HA_VENV/p2p-constraints.txt" -r "$HA_VENV/p2p-requirements.txt"
  "${pip[@]}" install --quiet --no-deps -e "$ROOT"
  # Nothing may be broken but the pins we dropped on purpose.
  broken="$("${pip[@]}" check 2>/dev/null |
    grep -v -e '^p2p-energy .* has requirement ' -e '^No broken requirements' || true)"
  if [ -n "$broken" ]; then
    echo "$broken" >&2
    echo "The Home Assistant 2026.2.3 environment has broken requirements (above)." >&2
    exit 1
  fi
  echo "$want" >"$stamp"
  echo "Installed in $((SECONDS - started)) s." >&2
fi
export PATH="$HA_VENV/bin:$PATH"
cd "$ROOT"
