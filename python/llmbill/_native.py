"""Imports the compiled core, with an error that says how to build it when it is missing."""

try:
    from . import _core as _core
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "llmbill's compiled core (llmbill._core) is missing or broken; build it with "
        "`pip install .` (or `make test`) from the project root"
    ) from exc

core = _core
