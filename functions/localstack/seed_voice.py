"""Demo voice samples for the two seeded reps, added through the normal ingest path.

Each file under ``demo_samples/<first name>/`` is added as an upload of the rep ``<first name>@example.com``;
the extract and embed tasks then take it to ``ready`` like any upload. The content hash makes this a
no-op on every later start.
"""

from __future__ import annotations

import logging
from pathlib import Path

from shared import accounts
from shared.voice.ingest import add_upload

log = logging.getLogger(__name__)

SAMPLES_DIR = Path(__file__).with_name("demo_samples")


def seed_samples(container, samples_dir: Path = SAMPLES_DIR) -> int:
    """Add the demo emails of every rep that has a folder and exists; returns how many were new.

    Args:
        container: The stack's container (its db, blobs and tasks are used).
        samples_dir: The folder with one subfolder of ``.txt`` emails per rep.
    """
    added = 0
    for folder in sorted(p for p in samples_dir.iterdir() if p.is_dir()):
        rep = accounts.rep_by_email(container.db, f"{folder.name}@example.com")
        if rep is None:
            continue
        for path in sorted(folder.glob("*.txt")):
            _, status = add_upload(container, rep, path.read_bytes(), filename=path.name,
                                   content_type="text/plain", title=path.stem.replace("-", " ")[3:].strip(),
                                   purpose="voice")
            added += status == 202
    log.info("demo voice samples in place", extra={"fields": {"added": added}})
    return added
