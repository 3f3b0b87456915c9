"""Requirements for the project in the newest-Home-Assistant test environment.

Run by scripts/_env_ha_latest.sh with that environment's Python, after
pytest-homeassistant-custom-component (and with it Home Assistant) is
installed. pyproject.toml pins what Home Assistant 2025.4.4 pins; a newer
Home Assistant pins other versions of the same packages (aiohttp,
cryptography, numpy, orjson, pydantic, SQLAlchemy, ...), so this writes:

* the constraints: Home Assistant's own package_constraints.txt (what it
  enforces on every integration's requirements), plus the exact version of
  every other package already installed (the test harness's pytest and
  plugins), so installing the project changes none of them;
* the requirements: the project's dependencies, with the pin dropped where
  the constraints name the package (their version then comes from Home
  Assistant) and kept everywhere else, so the result is as repeatable as the
  main environment; and what a real Home Assistant process needs that the
  test harness does not install (:data:`HOME_ASSISTANT_RUNTIME`), at the
  version Home Assistant pins.

It prints each pin it dropped with the version that replaces it.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import homeassistant

# A real Home Assistant (tests/integration/test_real_home_assistant.py) refuses
# to start without its frontend; the harness runs without one.
HOME_ASSISTANT_RUNTIME = ("home-assistant-frontend",)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return canonical(match.group(1)) if match else None


def constraints() -> dict[str, list[str]]:
    """Home Assistant's constraints, then the installed versions of the rest."""
    found: dict[str, list[str]] = {}
    ha_constraints = Path(homeassistant.__file__).parent / "package_constraints.txt"
    for raw in ha_constraints.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and (name := requirement_name(line)):
            found.setdefault(name, []).append(line)
    for dist in metadata.distributions():
        name = canonical(dist.metadata["Name"])
        if name not in found and name != "p2p-energy":
            found[name] = [f"{name}=={dist.version}"]
    return found


def main(root: Path, out: Path) -> None:
    pinned = constraints()
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    requirements = []
    for dependency in project["dependencies"]:
        name = requirement_name(dependency)
        if name in pinned:
            unpinned = re.split(r"\s*[=<>!~;]", dependency, maxsplit=1)[0]
            requirements.append(unpinned)
            print(f"  {dependency} -> {', '.join(pinned[name])}", file=sys.stderr)
        else:
            requirements.append(dependency)
    for name in HOME_ASSISTANT_RUNTIME:
        assert name in pinned, f"Home Assistant no longer pins {name}"
        requirements.append(name)
    (out / "p2p-constraints.txt").write_text(
        "".join(f"{line}\n" for lines in pinned.values() for line in lines)
    )
    (out / "p2p-requirements.txt").write_text("".join(f"{r}\n" for r in requirements))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
