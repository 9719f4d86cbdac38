"""``python -m SynthMedLib.worker``: serve requests on stdin/stdout until stdin closes."""

import sys

from SynthMedLib.worker.server import main

if __name__ == "__main__":
    sys.exit(main())
