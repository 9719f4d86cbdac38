"""Python dependencies on first use, after one confirmation.

torch comes from the PyTorch extension's installer (it picks the CUDA build for this machine); the
rest from Resources/requirements.txt, version ranges only. Packages Slicer ships (SimpleITK,
numpy) are never installed or upgraded: replacing them under a running Slicer breaks it.
"""

import importlib.metadata
import importlib.util
from pathlib import Path

from packaging.requirements import Requirement

TORCH_REQUIREMENT = ">=2.2"
SLICER_OWNED = {"simpleitk", "numpy", "vtk", "torch"}


def requirements_file(module_dir):
    """Resources/requirements.txt of the installed extension (beside SynthMed.py) or of a source
    checkout (the repository's top-level Resources/)."""
    module_dir = Path(module_dir)
    for candidate in (module_dir / "Resources" / "requirements.txt", module_dir.parent / "Resources" / "requirements.txt"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no Resources/requirements.txt beside {module_dir}")


def read_requirements(path):
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            if requirement.name.lower() in SLICER_OWNED:
                raise ValueError(f"{path} must not list {requirement.name}: Slicer (or the PyTorch extension) provides it")
            out.append(requirement)
    return out


def installed_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def unmet(requirements, version_of=installed_version):
    """[(requirement, installed version or None)] for those not satisfied."""
    out = []
    for requirement in requirements:
        version = version_of(requirement.name)
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            out.append((requirement, version))
    return out


def torch_missing():
    return importlib.util.find_spec("torch") is None


def describe(unmet_requirements, need_torch):
    parts = (["PyTorch (through the PyTorch extension)"] if need_torch else []) + [
        f"{r.name} {r.specifier}" + (f" (have {v})" if v else "") for r, v in unmet_requirements]
    return ("SynthMed needs these Python packages, installed into Slicer's Python once:\n  "
            + "\n  ".join(parts) + "\n\nInstall them now? This can take several minutes.")


def ensure(module_dir, confirm, pip_install, torch_installer=None, version_of=installed_version,
           need_torch=None):
    """Install what is missing after ONE ``confirm(text)``; returns True when all is in place.

    ``pip_install(args)``: slicer.util.pip_install in Slicer. ``torch_installer()``: the PyTorch
    extension's ``PyTorchUtilsLogic().installTorch``; None falls back to pip with our range."""
    requirements = read_requirements(requirements_file(module_dir))
    missing = unmet(requirements, version_of)
    need_torch = torch_missing() if need_torch is None else need_torch
    if not missing and not need_torch:
        return True
    if not confirm(describe(missing, need_torch)):
        return False
    if need_torch:
        if torch_installer is not None:
            if torch_installer(TORCH_REQUIREMENT) is None:
                return False
        else:
            pip_install(f"torch{TORCH_REQUIREMENT}")
    if missing:
        # Quoted: a range like >=1.4 would otherwise be a shell redirection in some pip wrappers.
        pip_install(" ".join(f'"{r}"' for r, _version in missing))
    return True


def pytorch_extension_installer():
    """The PyTorch extension's installer, or None when the extension is not installed."""
    try:
        import PyTorchUtils  # the PyTorch extension (Slicer only)
    except ImportError:
        return None
    logic = PyTorchUtils.PyTorchUtilsLogic()
    return lambda requirement: logic.installTorch(askConfirmation=False, torchVersionRequirement=requirement)
