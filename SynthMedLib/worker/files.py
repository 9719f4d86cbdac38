"""Images in and out of the worker: the client writes the input as NIfTI, the worker only reads
it; results go out as NIfTI files in the request's output folder, each described for the client."""

import os

from SynthMedLib.errors import InputError


def image_entry(context, image, name, role, index=None, provenance=None, labels=False):
    """Write ``image`` into the output folder (atomically, verified); returns {path, role, name,
    index, provenance}."""
    import SimpleITK as sitk

    from SynthMedLib.storage.atomic import write_image

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    # Uncompressed: these files are hand-overs the panel reads at once and then deletes. gzip made
    # writing and verifying a 1 mm result several seconds per target, most of a new age's wait.
    path = context.output_dir / f"{safe}.nii"
    if labels:
        image = sitk.Cast(image, sitk.sitkUInt8)
    write_image(image, path, compress=False)
    return {"path": str(path), "role": role, "name": name, "index": index or {},
            "provenance": provenance or {}}


def read_input(path):
    """The input image a request names."""
    from SynthMedLib.storage.reading import read_image

    if not os.path.isfile(path):
        raise InputError(f"input file {path} does not exist")
    return read_image(path)
