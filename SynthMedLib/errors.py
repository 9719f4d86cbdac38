"""Errors a user can act on. Their message says what is wrong and what to do about it; the CLI
prints it without a traceback and the Slicer module shows it in the panel."""


class SynthMedError(Exception):
    """Base class for every error SynthMed reports to the user."""


class InputError(SynthMedError):
    """The user's image or conditions cannot be used (wrong dimension, NaN, empty, out of range)."""


class CardError(SynthMedError):
    """A model card is invalid or refers to something that does not exist."""


class WeightsError(SynthMedError):
    """A weights file is missing, corrupted, of the wrong format or does not match the card."""


class Cancelled(SynthMedError):
    """The user cancelled a long operation."""
