"""Progress reporting and cancellation for long work (sampling steps, decode tiles).

One object carries both so that every loop checks for cancel exactly where it reports a step: the
Slicer worker cancels through it, the terminal gets a tqdm bar, and a caller's callback sees
(stage, step, total).
"""

from SynthMedLib.errors import Cancelled


class Progress:
    """``callback(stage, step, total)`` is called after each unit of work; ``cancel`` is a
    ``threading.Event`` (or anything with ``is_set()``) or a no-argument callable returning True to
    stop. ``bar=True`` shows a tqdm bar per stage on the terminal."""

    def __init__(self, callback=None, cancel=None, bar=False):
        self.callback = callback
        self.cancel = cancel
        self.bar = bar
        self._tqdm = None
        self._stage = None

    @classmethod
    def wrap(cls, progress):
        """Accept a Progress, a bare callback, or None."""
        if isinstance(progress, cls):
            return progress
        return cls(callback=progress)

    def cancelled(self):
        if self.cancel is None:
            return False
        if hasattr(self.cancel, "is_set"):
            return self.cancel.is_set()
        return bool(self.cancel())

    def check(self):
        """Raise Cancelled if the user asked to stop; called before every network evaluation."""
        if self.cancelled():
            self.close()
            raise Cancelled("cancelled by the user")

    def start(self, stage, total):
        self.close()
        self._stage = stage
        if self.bar:
            from tqdm import tqdm

            self._tqdm = tqdm(total=total, desc=stage, unit="step", leave=False)
        self.report(stage, 0, total)

    def step(self, stage, step, total):
        if self._tqdm is not None and stage == self._stage:
            self._tqdm.update(step - self._tqdm.n)
        self.report(stage, step, total)
        self.check()

    def report(self, stage, step, total):
        if self.callback is not None:
            self.callback(stage, step, total)

    def close(self):
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
