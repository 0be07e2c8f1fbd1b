"""Real DICOM peers for tests: filled in by the fixture library."""
