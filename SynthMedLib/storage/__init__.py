"""Files in and out, safely: strict image reading (truncation, NaN/inf), one atomic verified
writer used by every output (CLI, worker, cohort, caches), and run folders with a manifest as the
commit marker."""

from SynthMedLib.storage.atomic import copy_file, write_bytes, write_image, write_json, write_text
from SynthMedLib.storage.reading import read_image
from SynthMedLib.storage.run_folder import RunFolder, prepare_output_folder

__all__ = ["copy_file", "write_bytes", "write_image", "write_json", "write_text", "read_image",
           "RunFolder", "prepare_output_folder"]
