"""A core `Volume` as VTK sees it, sharing its buffer: a vtkImageData in index space (origin 0,
spacing 1, identity direction; x = column, y = row, z = slice) and the 4x4 matrices between index
and patient (LPS mm) coordinates. The matrices carry the whole geometry, a sheared one too (gantry
tilt), so reslicing and rendering go through them and never copy or resample the voxels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonDataModel import vtkImageData

from workstation.core.pixels.volume import Volume


@dataclass
class VolumeImage:
    volume: Volume
    image: vtkImageData
    index_to_patient: np.ndarray     # 4x4: (column, row, slice, 1) -> (x, y, z, 1) in LPS mm
    patient_to_index: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.volume.array.nbytes


def volume_image(volume: Volume) -> VolumeImage:
    """Wrap the volume's array without copying it (the array must stay C-contiguous and alive: the
    VolumeImage keeps the Volume)."""
    array = volume.array
    if not array.flags.c_contiguous:
        raise ValueError("the volume's array must be C-contiguous to be shared with VTK")
    slices, rows, columns = array.shape
    image = vtkImageData()
    image.SetDimensions(columns, rows, slices)
    image.SetOrigin(0.0, 0.0, 0.0)
    image.SetSpacing(1.0, 1.0, 1.0)
    scalars = numpy_to_vtk(array.reshape(-1), deep=False)
    scalars.SetName("values")
    image.GetPointData().SetScalars(scalars)
    forward = volume.affine()
    return VolumeImage(volume, image, forward, np.linalg.inv(forward))
