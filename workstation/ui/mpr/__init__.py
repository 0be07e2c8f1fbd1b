"""The MPR layout and the 3D view: Qt and VTK together, imported only when MPR opens."""
