"""Where the shared DICOM sample corpus is, and what to do when it is missing.

It sits beside the checkout in ../shared/dicom-samples; WORKSTATION_SAMPLES points elsewhere.
Tests skip with the reason when it is absent, but fail when CI is set, where it must be.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SAMPLES = Path(
    os.environ.get("WORKSTATION_SAMPLES")
    or Path(__file__).resolve().parent.parent.parent / "shared" / "dicom-samples"
)
MANIFEST = SAMPLES / "MANIFEST.tsv"


def require_samples() -> Path:
    if not SAMPLES.is_dir():
        reason = (f"the shared DICOM samples are not at {SAMPLES} (they sit beside the checkout in "
                  "../shared, or set WORKSTATION_SAMPLES)")
        if os.environ.get("CI"):
            pytest.fail(reason + " and CI is set, so this is an error")
        pytest.skip(reason)
    return SAMPLES
