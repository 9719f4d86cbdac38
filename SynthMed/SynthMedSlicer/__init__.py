"""Slicer-side logic of the SynthMed module, free of qt and ctk.

Everything here speaks MRML (scene, volume, segmentation, sequence, table and plot nodes) and
talks to the SynthMedLib worker process; the Qt widget in SynthMed.py only wires the .ui to it.
Keeping qt out lets the tests run this package against the real MRML of the slicer-core wheel.
It lives in a package folder because Slicer treats every .py beside SynthMed.py as a module.
"""
