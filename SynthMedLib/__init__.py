"""SynthMedLib: the inference, training and evaluation library behind the SynthMed Slicer module.

It never imports slicer, qt or vtk: it speaks SimpleITK images and numpy so that it runs the same in
PythonSlicer, in the worker process and as the ``synthmed`` command.
"""

__version__ = "0.1.0"
