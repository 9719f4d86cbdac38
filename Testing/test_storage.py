"""Strict reading and the atomic verified writer (SynthMedLib.storage): damaged NIfTI refused,
and faults injected while writing (a file-size limit enforced by the kernel, ENOSPC, SIGKILL
mid-write) never leave an incomplete file under a final name."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from SynthMedLib.errors import InputError
from SynthMedLib.storage import prepare_output_folder, read_image, write_image, write_json
from SynthMedLib.storage.atomic import WriteError

REPO = Path(__file__).resolve().parents[1]


def scan(shape=(24, 24, 24), seed=0):
    array = np.random.default_rng(seed).random(shape, dtype=np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.5, 2.0))
    return image


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if ".part" in p.name)


# -- strict reading ------------------------------------------------------------------------------

@pytest.mark.parametrize("kept", [0.5, 0.8, 0.95])
def test_truncated_nifti_gz_is_refused_not_zero_filled(tmp_path, kept):
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(scan(), str(path), True)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * kept)])
    sitk.ReadImage(str(path))  # what used to happen: SimpleITK reads it, zero-filled, no error
    with pytest.raises(InputError, match="damaged or truncated"):
        read_image(path)


def test_truncated_uncompressed_nifti_is_refused(tmp_path):
    path = tmp_path / "scan.nii"
    sitk.WriteImage(scan(), str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match="damaged or truncated"):
        read_image(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_nan_and_inf_voxels_are_refused_in_every_format(tmp_path, bad, suffix):
    array = np.random.default_rng(1).random((20, 20, 20), dtype=np.float32)
    array[5, 6, 7] = bad
    path = tmp_path / f"scan{suffix}"
    if suffix == ".nrrd":
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    else:
        nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    with pytest.raises(InputError, match="1 NaN or infinite voxels"):
        read_image(path)


def test_intact_file_reads_with_its_geometry(tmp_path):
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(scan(), str(path), True)
    image = read_image(path)
    assert image.GetSpacing() == (1.0, 1.5, 2.0)
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(scan()))


# -- the writer ----------------------------------------------------------------------------------

def test_writer_leaves_a_verified_file_and_no_temporary(tmp_path):
    path = write_image(scan(), tmp_path / "out" / "a.nii.gz")
    assert np.array_equal(sitk.GetArrayViewFromImage(read_image(path)),
                          sitk.GetArrayViewFromImage(scan()))
    assert leftovers(path.parent) == []
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_nan_in_a_sidecar_is_refused(tmp_path):
    with pytest.raises(WriteError, match="NaN"):
        write_json(tmp_path / "a.json", {"guidance": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_injected_enospc_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    previous = write_image(scan(seed=5), tmp_path / "a.nii.gz").read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(WriteError, match="disk full"):
        write_image(scan(seed=6), tmp_path / "a.nii.gz")
    with pytest.raises(WriteError, match="disk full"):
        write_image(scan(seed=6), tmp_path / "b.nii.gz")
    # the previous complete version stays; the new name never appears; no temporary is left
    assert (tmp_path / "a.nii.gz").read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]


CHILD = textwrap.dedent("""
    import resource, signal, sys
    import numpy as np, SimpleITK as sitk
    from SynthMedLib.storage import write_image
    from SynthMedLib.storage.atomic import WriteError
    mode, folder = sys.argv[1], sys.argv[2]
    array = np.random.default_rng(0).random((64, 64, 64), dtype=np.float32)  # ~1 MB compressed
    image = sitk.GetImageFromArray(array)
    if mode == "limit":
        # The kernel refuses to grow any file past 100 kB: what a full disk does to a writer.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            write_image(image, f"{folder}/big.nii.gz")
        except WriteError as error:
            print("refused:", error)
            sys.exit(3)
        sys.exit(0)
    for i in range(10_000):
        write_image(image, f"{folder}/img-{i}.nii.gz")
        print(i, flush=True)
""")


def _child(mode, folder):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", CHILD, mode, str(folder)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_file_size_limit_mid_write_is_an_error_and_leaves_nothing(tmp_path):
    child = _child("limit", tmp_path)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 3, err
    assert "refused: cannot write" in out and "nothing was left under that name" in out
    assert list(tmp_path.iterdir()) == []


def test_sigkill_mid_write_leaves_only_complete_files(tmp_path):
    expected = np.random.default_rng(0).random((64, 64, 64), dtype=np.float32)
    for delay in (0.9, 1.7, 2.6):
        folder = tmp_path / f"kill-{delay}"
        folder.mkdir()
        child = _child("loop", folder)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        finals = sorted(p for p in folder.iterdir() if ".part" not in p.name)
        for path in finals:  # every file under a final name is whole and exact
            assert np.array_equal(sitk.GetArrayViewFromImage(read_image(path)), expected)
        # the killed write can only have left a hidden temporary, never a final name
        assert all(name.startswith(".img-") for name in leftovers(folder))


# -- output folders ------------------------------------------------------------------------------

def test_out_that_is_a_file_is_refused_before_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        prepare_output_folder(tmp_path / "file")
    with pytest.raises(InputError, match="cannot be written"):
        prepare_output_folder(tmp_path / "file" / "below")


def test_read_only_out_is_refused_before_work(tmp_path):
    if os.geteuid() == 0:  # root writes through permissions; /proc refuses even root
        target = Path("/proc/synthmed-out")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        target = locked / "out"
    with pytest.raises(InputError, match="cannot be written"):
        prepare_output_folder(target)


def test_non_empty_out_needs_overwrite_and_stale_files_go(tmp_path):
    first = prepare_output_folder(tmp_path / "run")
    for name in ("a.nii.gz", "b.nii.gz"):
        first.write_image(scan(), name)
    first.commit(pipeline="test")
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty.*--overwrite"):
        prepare_output_folder(tmp_path / "run")
    second = prepare_output_folder(tmp_path / "run", overwrite=True)
    second.write_image(scan(), "a.nii.gz")
    second.commit(pipeline="test")
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["a.nii.gz", "manifest.json", "notes.txt"]  # b (stale) removed, notes kept
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [f["name"] for f in manifest["files"]] == ["a.nii.gz"]
