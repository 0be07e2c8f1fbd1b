"""The DICOM information model as the browser and viewer see it."""

from workstation.core.model.records import Instance, KeyObjectInstance, Patient, Series, Study

__all__ = ["Patient", "Study", "Series", "Instance", "KeyObjectInstance"]
