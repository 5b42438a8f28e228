"""The node's spool: every received instance on disk before the sender hears "success".

    DIR/spool/<StudyInstanceUID>/<SOPInstanceUID>.dcm   the file as received (preamble, file
                                                        meta and the encoded dataset), written
                                                        atomically and fsync'd, folder too

UIDs are checked (digits and dots, at most 64 characters) before they name a file, so no
name from the network can leave the spool. A study's fingerprint is its instances' names
and sizes: a screened study whose fingerprint changed has new instances.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..io.files import atomic_write, fsync_dir

SPOOL = "spool"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def valid_uid(uid: object) -> bool:
    return isinstance(uid, str) and 0 < len(uid) <= 64 and bool(_UID.match(uid))


class Spool:
    def __init__(self, out: Path):
        self.root = Path(out) / SPOOL
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, study_uid: str) -> Path:
        if not valid_uid(study_uid):
            raise ValueError(f"not a valid UID: {study_uid!r}")
        return self.root / study_uid

    def put(self, study_uid: str, sop_uid: str, data: bytes) -> Path:
        """Store one instance (replacing a copy received before); durable on return."""
        if not valid_uid(sop_uid):
            raise ValueError(f"not a valid UID: {sop_uid!r}")
        folder = self.folder(study_uid)
        if not folder.is_dir():
            folder.mkdir(exist_ok=True)
            fsync_dir(self.root)  # the new study's folder survives a power loss too
        path = folder / f"{sop_uid}.dcm"
        atomic_write(path, data)  # temp file, fsync, rename, fsync of the folder
        return path

    def studies(self) -> list[str]:
        """Study UIDs with at least one instance."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and valid_uid(p.name) and any(p.glob("*.dcm")))

    def files(self, study_uid: str) -> list[Path]:
        return sorted(self.folder(study_uid).glob("*.dcm"))

    def fingerprint(self, study_uid: str) -> str:
        parts = []
        for p in self.files(study_uid):
            try:
                parts.append(f"{p.name}|{os.stat(p).st_size}")
            except OSError:
                continue
        return "\n".join(parts)
