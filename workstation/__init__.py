"""An open-source DICOM diagnostic workstation."""

__version__ = "0.1.0"
