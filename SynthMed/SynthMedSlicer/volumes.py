"""Volume node <-> SimpleITK image, geometry included.

Slicer keeps a volume's geometry as one IJK->RAS matrix; SimpleITK (and NIfTI files written by
it) as origin, spacing and direction in LPS. The two differ by a flip of the first two axes, so an
oblique or LPS-acquired scan must go through the full matrix, never origin/spacing alone.
"""

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from SynthMedLib.errors import InputError

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ijk_to_ras_of(node):
    """The node's IJK->RAS matrix in world coordinates (a parent linear transform applied)."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = slicer.util.arrayFromVTKMatrix(matrix)
    parent = node.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise InputError(f"volume '{node.GetName()}' is under a non-linear transform; harden the "
                             "transform (Data module: right-click > Harden transform) and try again")
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        ijk_to_ras = slicer.util.arrayFromVTKMatrix(to_world) @ ijk_to_ras
    return ijk_to_ras


def image_from_volume_node(node):
    """A SimpleITK float32/int image with the node's voxels and world geometry (the node is only read)."""
    if node is None or node.GetImageData() is None:
        raise InputError("select a volume that holds an image")
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"'{node.GetName()}' is a label map; select the scan itself")
    if node.GetImageData().GetNumberOfScalarComponents() != 1:
        raise InputError(f"'{node.GetName()}' has {node.GetImageData().GetNumberOfScalarComponents()} "
                         "components per voxel; select a single-channel (grey-level) scan")
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)  # copy: never alias the input's voxels
    image = sitk.GetImageFromArray(array)
    lps = RAS_FROM_LPS @ ijk_to_ras_of(node)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise InputError(f"volume '{node.GetName()}' has a zero spacing")
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(d) for d in (lps[:3, :3] / spacing).ravel()])
    image.SetOrigin([float(o) for o in lps[:3, 3]])
    return image


def ijk_to_ras_from_image(image):
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.array(image.GetSpacing(), dtype=float)
    lps[:3, 3] = image.GetOrigin()
    return RAS_FROM_LPS @ lps


def set_geometry(node, image):
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras_from_image(image)))


def volume_node_from_image(scene, image, name, class_name="vtkMRMLScalarVolumeNode"):
    """A new volume node in ``scene`` with ``image``'s voxels and geometry, display ready."""
    if image.GetDimension() != 3:
        raise InputError(f"expected a 3D image, got {image.GetDimension()}D")
    node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
    set_geometry(node, image)
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    node.CreateDefaultDisplayNodes()
    return node
