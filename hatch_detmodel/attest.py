"""``attest``: an in-toto Statement v1 about an artifact, for CI to sign with existing tools.

The subject is the ``.tgz`` (its file name and sha256); the predicate is the manifest, so a signed
statement binds the archive's bytes to the per-file hashes and the trial it declares. Nothing is
signed or sent here.
"""

from __future__ import annotations

from typing import Any

from .reader import ArtifactReport

__all__ = ["PREDICATE_TYPE", "STATEMENT_TYPE", "statement"]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://github.com/hatch-detmodel/hatch-detmodel/manifest/v1"


def statement(report: ArtifactReport) -> dict[str, Any]:
    """The Statement for a verified artifact (the caller checks ``report.ok`` first)."""
    manifest = report.require_manifest()
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": report.archive.name, "digest": {"sha256": report.archive.sha256}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": manifest.to_json(),
    }
