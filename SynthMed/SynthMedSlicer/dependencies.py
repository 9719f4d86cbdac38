"""Python dependencies, installed on the first click on a task after one confirmation.

torch comes from the PyTorch extension's installer (it picks the CUDA build for this machine; a
plain ``pip install torch`` gives CPU-only wheels on Windows, so without the extension we ask
for it, as SlicerTotalSegmentator does) and must be at least TORCH_MINIMUM; the rest comes from
Resources/requirements.txt, version ranges only, through ``slicer.packaging.pip_ensure`` where
Slicer has it (5.12 and later) and ``slicer.util.pip_install`` before. Packages Slicer ships
(SimpleITK, numpy) are never installed or upgraded: replacing them under a running Slicer breaks
it. In testing mode nothing is installed (SynthMedTest skips instead).
"""

import importlib.metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from SynthMedLib.errors import SynthMedError

TORCH_MINIMUM = "2.2"
TORCH_REQUIREMENT = f">={TORCH_MINIMUM}"
SLICER_OWNED = {"simpleitk", "numpy", "vtk", "torch"}

READY = "ready"
DECLINED = "declined"
SKIPPED = "skipped"  # testing mode: missing packages are not installed


class InstallError(SynthMedError):
    """The packages could not be installed (or need something the user must do first)."""


def requirements_file(module_dir):
    """Resources/requirements.txt of the installed extension (beside SynthMed.py) or of a source
    checkout (the repository's top-level Resources/)."""
    module_dir = Path(module_dir)
    for candidate in (module_dir / "Resources" / "requirements.txt",
                      module_dir.parent / "Resources" / "requirements.txt"):
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
                raise ValueError(f"{path} must not list {requirement.name}: "
                                 "Slicer (or the PyTorch extension) provides it")
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


def torch_problem(version):
    """None when ``version`` (torch.__version__, or None when absent) is recent enough, else why not."""
    if version is None:
        return "missing"
    try:
        if Version(str(version).split("+")[0]) < Version(TORCH_MINIMUM):
            return f"too old ({version}; SynthMed needs {TORCH_REQUIREMENT})"
    except InvalidVersion:
        return f"of an unknown version ({version})"
    return None


def describe(unmet_requirements, torch_issue):
    torch_part = []
    if torch_issue:
        torch_part = [f"PyTorch {TORCH_REQUIREMENT} through the PyTorch extension"
                      + ("" if torch_issue == "missing" else f" (installed PyTorch is {torch_issue})")]
    parts = torch_part + [f"{r.name} {r.specifier}" + (f" (have {v})" if v else "") for r, v in unmet_requirements]
    return ("SynthMed needs these Python packages, installed into Slicer's Python once:\n  "
            + "\n  ".join(parts) + "\n\nInstall them now? This can take several minutes.")


def ensure(module_dir, confirm, pip_install, torch_installer=None, version_of=installed_version,
           torch_version=None, pip_ensure=None, testing=False):
    """Install what is missing after ONE ``confirm(text)``: READY, DECLINED or SKIPPED (testing).

    ``pip_install(text)``: slicer.util.pip_install. ``pip_ensure(requirements, ...)``:
    slicer.packaging.pip_ensure where Slicer has it (used instead of pip_install, without a second
    prompt). ``torch_installer(requirement)``: the PyTorch extension's installer, None when the
    extension is not installed. ``torch_version``: installed torch version (None: look it up).
    Raises InstallError when the PyTorch extension is needed and absent, or an install fails."""
    requirements = read_requirements(requirements_file(module_dir))
    missing = unmet(requirements, version_of)
    torch_issue = torch_problem(version_of("torch") if torch_version is None else torch_version)
    if not missing and not torch_issue:
        return READY
    if testing:
        return SKIPPED
    if torch_issue and torch_installer is None:
        raise InstallError(f"SynthMed needs PyTorch {TORCH_REQUIREMENT} (installed: {torch_issue}). Install the "
                           "PyTorch extension from the Extensions Manager, restart Slicer, then click again; "
                           "it installs the PyTorch build that fits this computer's GPU.")
    if not confirm(describe(missing, torch_issue)):
        return DECLINED
    try:
        if torch_issue and torch_installer(TORCH_REQUIREMENT) is None:
            raise InstallError("the PyTorch extension did not install PyTorch (see the Python console)")
        if missing:
            if pip_ensure is not None:
                pip_ensure([str(r) for r, _version in missing], prompt_install=False, requester="SynthMed")
            else:
                # Quoted: a range like >=1.4 would otherwise be a shell redirection in some pip wrappers.
                pip_install(" ".join(f'"{r}"' for r, _version in missing))
    except InstallError:
        raise
    except Exception as error:  # pip's CalledProcessError, a network error...
        raise InstallError(f"installing SynthMed's Python packages failed: {error}") from error
    return READY


def pytorch_extension_installer():
    """The PyTorch extension's installer, or None when the extension is not installed."""
    try:
        import PyTorchUtils  # the PyTorch extension (Slicer only)
    except ImportError:
        return None
    logic = PyTorchUtils.PyTorchUtilsLogic()
    return lambda requirement: logic.installTorch(askConfirmation=False, torchVersionRequirement=requirement)


def slicer_pip_ensure():
    """slicer.packaging.pip_ensure (Slicer 5.12 and later), or None on older Slicer."""
    try:
        from slicer.packaging import pip_ensure
    except ImportError:
        return None
    return pip_ensure


def missing(module_dir, version_of=installed_version):
    """What is not installed (torch first): [] when all is there. The panel uses it to start the worker
    only when nothing needs installing; SynthMedTest to skip rather than install."""
    needed = [r.name for r, _v in unmet(read_requirements(requirements_file(module_dir)), version_of)]
    issue = torch_problem(version_of("torch"))
    return ([f"torch ({issue})"] if issue else []) + needed
