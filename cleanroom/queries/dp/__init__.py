"""The DP engine facade: the only package that imports OpenDP (see ``engine``)."""

from cleanroom.queries.dp.engine import (
    ALPHA,
    PRIVACY_UNIT,
    EngineError,
    Mechanism,
    PrivacyUnit,
    Release,
    frame_schema,
    mechanism_build,
    mechanism_dry_run,
    mechanism_release,
    scratch_sweep,
)

__all__ = [
    "ALPHA",
    "PRIVACY_UNIT",
    "EngineError",
    "Mechanism",
    "PrivacyUnit",
    "Release",
    "frame_schema",
    "mechanism_build",
    "mechanism_dry_run",
    "mechanism_release",
    "scratch_sweep",
]
