"""Task configuration: the pystachio schema, helpers and loader/validator."""

import sys
from typing import Any


class _DeferredPkgResources:
    """Stands in for pkg_resources inside pystachio.config until something really uses it."""

    def __getattr__(self, name: str) -> Any:
        import pkg_resources

        return getattr(pkg_resources, name)


def _import_pystachio_config_without_pkg_resources() -> None:
    """pystachio.config imports pkg_resources at module level, which costs ~70 ms and ~10 MB of
    RSS in every runner, only to load configs from package resources. Import it with
    pkg_resources hidden, then hand it a stand-in that imports the real one on first use."""
    if "pystachio.config" in sys.modules or "pkg_resources" in sys.modules:
        return
    sys.modules["pkg_resources"] = None  # type: ignore[assignment] - makes `import` raise
    try:
        import pystachio.config as config
    finally:
        del sys.modules["pkg_resources"]
    config.pkg_resources = _DeferredPkgResources()  # type: ignore[attr-defined]


_import_pystachio_config_without_pkg_resources()
