"""DICOM networking on pynetdicom: nodes, associations, C-ECHO, C-FIND, retrieval, storage, sending."""
