# Shared set-up for the README's commands: one virtual environment in .venv,
# created with Python 3.13 and refreshed whenever pyproject.toml changes.
# Sourced, not executed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${P2P_VENV:-$ROOT/.venv}"
EXTRAS="${1:-test,demo}"

find_python() {
  if command -v pyenv >/dev/null 2>&1 && PYENV_VERSION=3.13.0 pyenv which python3.13 >/dev/null 2>&1; then
    PYENV_VERSION=3.13.0 pyenv which python3.13
    return
  fi
  for candidate in python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))'; then
      command -v "$candidate"
      return
    fi
  done
  echo "p2p_energy needs Python 3.13 (python3.13 on PATH, or pyenv with 3.13.0)" >&2
  exit 1
}

if [ ! -x "$VENV/bin/python" ]; then
  "$(find_python)" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip==26.3
fi

# The stamp holds the hash of pyproject.toml and the extras installed with it,
# "<hash>-test,demo". Installed means the same hash and every extra asked for
# among those installed, so `demo` after `test,demo` installs nothing.
stamp="$VENV/.p2p-installed"
hash="$(sha256sum <"$ROOT/pyproject.toml" | cut -c1-16)"
stamped="$(cat "$stamp" 2>/dev/null || true)"
installed=""
[ "${stamped%%-*}" = "$hash" ] && installed="${stamped#*-}"
missing=""
for extra in ${EXTRAS//,/ }; do
  case ",$installed," in *",$extra,"*) ;; *) missing="$missing,$extra" ;; esac
done
if [ "${stamped%%-*}" != "$hash" ] || [ -n "$missing" ]; then
  # Keep what is installed for this pyproject.toml and add what is missing.
  EXTRAS="$(echo "$installed$missing" | sed 's/^,//')"
  echo "Installing p2p_energy and its dependencies into $VENV (extras: $EXTRAS) ..." >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$EXTRAS]"
  echo "$hash-$EXTRAS" >"$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
