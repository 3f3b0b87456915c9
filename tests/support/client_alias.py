"""One client package per test process, whichever name imports it.

The household client lives in ``custom_components/p2p_energy/client`` (HACS
installs only that folder, so Home Assistant imports it as
``custom_components.p2p_energy.client``); the grid server, the demo and most
tests import it as ``p2p_energy_client`` (the repository's symlink, and the
name the wheel installs). A test that runs Home Assistant and the grid server
in one process would otherwise load every client module twice, and an
``isinstance`` or ``except`` across the two copies would silently miss.

:func:`install` puts a finder first on ``sys.meta_path`` that answers every
``custom_components.p2p_energy.client[.x]`` import with the already-imported
(or now imported) ``p2p_energy_client[.x]`` module object itself. Production
needs nothing of this: Home Assistant never loads the grid server, and the
grid server never loads Home Assistant.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

ALIAS = "custom_components.p2p_energy.client"
REAL = "p2p_energy_client"


class _ClientAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # a placeholder; exec_module swaps the real module in

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        # The import system hands back whatever sys.modules holds under the
        # name once the loader returns: the real module, not the placeholder.
        sys.modules[name] = importlib.import_module(REAL + name[len(ALIAS) :])


def install() -> None:
    if not any(isinstance(finder, _ClientAlias) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ClientAlias())
