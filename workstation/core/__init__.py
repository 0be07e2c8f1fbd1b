"""The Qt-free core: DICOM model, pixels, cache, network and print. Never imports Qt or VTK."""
