"""The Slicer extension is complete: CMake bundles every SynthMedLib file, names only files that
exist, and the module, icon, .ui, requirements and Extensions Index entry follow Slicer's rules.

The CMake checks run twice: by reading the CMake text (always), and by configuring the real
CMakeLists.txt with cmake against a stand-in SlicerConfig.cmake that records what the Slicer
macros are given (when cmake is installed), so the GLOB patterns are evaluated by CMake itself.
"""

import ast
import fnmatch
import json
import re
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "SynthMed"
LIB_DIR = ROOT / "SynthMedLib"
TOP_CMAKE = (ROOT / "CMakeLists.txt").read_text()
MODULE_CMAKE = (MODULE_DIR / "CMakeLists.txt").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def cmake_without_comments(text):
    return "\n".join(line.split("#", 1)[0] if not line.lstrip().startswith("#") else "" for line in text.splitlines())


def cmake_set(text, name):
    match = re.search(r"set\(\s*" + re.escape(name) + r"\b(.*?)\)\s*\n", cmake_without_comments(text), re.S)
    assert match, f"set({name} ...) not found"
    return match.group(1).strip()


def library_files():
    """Every file of the SynthMedLib package a packaged extension needs (caches are not files)."""
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in LIB_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def package_data_patterns():
    patterns = set()
    for pats in PYPROJECT["tool"]["setuptools"]["package-data"].values():
        patterns.update(pats)
    return patterns


def module_cmake_glob_patterns(variable):
    """The patterns of `file(GLOB_RECURSE <variable> ... ${SYNTHMEDLIB_SOURCE_DIR}/SynthMedLib/<pattern>)`."""
    text = cmake_without_comments(MODULE_CMAKE)
    match = re.search(r"file\(GLOB_RECURSE\s+" + variable + r"\b(.*?)\)", text, re.S)
    assert match, f"file(GLOB_RECURSE {variable} ...) not found"
    return set(re.findall(r"\$\{SYNTHMEDLIB_SOURCE_DIR\}/SynthMedLib/(\S+)", match.group(1)))


def bundled_by_reading():
    scripts = module_cmake_glob_patterns("SYNTHMEDLIB_PYTHON_SCRIPTS")
    resources = module_cmake_glob_patterns("SYNTHMEDLIB_RESOURCES")
    bundled = set()
    for rel in library_files():
        name = rel.split("/")[-1]
        if any(fnmatch.fnmatch(name, pat) for pat in scripts | resources):
            bundled.add(rel)
    return bundled


# --- top-level CMakeLists.txt -------------------------------------------------------------------


def test_top_level_cmake_is_a_slicer_extension():
    for var in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert cmake_set(TOP_CMAKE, var).strip('"'), f"{var} is empty"
    assert "PyTorch" in cmake_set(TOP_CMAKE, "EXTENSION_DEPENDS").split('"')[1].split()
    text = cmake_without_comments(TOP_CMAKE)
    order = [
        r"project\(SynthMed\)",
        r"find_package\(Slicer REQUIRED\)",
        r"include\(\$\{Slicer_USE_FILE\}\)",
        r"add_subdirectory\(SynthMed\)",
        r"include\(\$\{Slicer_EXTENSION_GENERATE_CONFIG\}\)",
        r"include\(\$\{Slicer_EXTENSION_CPACK\}\)",
    ]
    positions = []
    for pattern in order:
        match = re.search(pattern, text)
        assert match, f"missing {pattern}"
        positions.append(match.start())
    assert positions == sorted(positions), "Slicer extension statements are out of order"


def test_urls_into_this_repository_name_existing_files():
    for var in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        for url in cmake_set(TOP_CMAKE, var).strip('"').split():
            match = re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[^/]+/(.+)", url)
            assert match, f"{var}: {url} is not a raw file URL of the repository"
            assert (ROOT / match.group(1)).is_file(), f"{var} points at {match.group(1)}, which does not exist"


# --- SynthMed/CMakeLists.txt: nothing forgotten, nothing missing --------------------------------


def test_every_file_the_module_cmake_names_exists():
    for var in ("MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES"):
        for item in cmake_set(MODULE_CMAKE, var).split():
            path = MODULE_DIR / item.replace("${MODULE_NAME}", "SynthMed")
            assert path.is_file(), f"{var} names {item}, which does not exist"
    for extra in re.findall(r"list\(APPEND SYNTHMEDLIB_RESOURCES\s+(\S+)\)", MODULE_CMAKE):
        assert (ROOT / extra).is_file(), f"SYNTHMEDLIB_RESOURCES names {extra}, which does not exist"


def test_every_python_file_of_the_module_folder_is_listed():
    listed = {item.replace("${MODULE_NAME}", "SynthMed")
              for item in cmake_set(MODULE_CMAKE, "MODULE_PYTHON_SCRIPTS").split()}
    on_disk = {p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    assert on_disk == listed, (f"not listed in MODULE_PYTHON_SCRIPTS: {sorted(on_disk - listed)}; "
                               f"listed but absent: {sorted(listed - on_disk)}")


def test_library_patterns_match_what_pip_ships():
    assert module_cmake_glob_patterns("SYNTHMEDLIB_PYTHON_SCRIPTS") == {"*.py"}
    assert module_cmake_glob_patterns("SYNTHMEDLIB_RESOURCES") == package_data_patterns()


def test_every_library_python_and_data_file_is_bundled():
    needed = [rel for rel in library_files() if rel.endswith((".py", ".json", ".safetensors"))]
    assert any(rel.endswith("SynthMedLib/__init__.py") for rel in needed)
    missing = sorted(set(needed) - bundled_by_reading())
    assert not missing, f"files the packaged extension would lack: {missing}"


def test_no_library_file_is_left_out_of_the_bundle():
    # A file pip would not ship either (e.g. a .yaml config) is forgotten in both places.
    left_out = sorted(set(library_files()) - bundled_by_reading())
    assert not left_out, (
        f"{left_out} are neither Python nor a data pattern; add their pattern to "
        "[tool.setuptools.package-data] in pyproject.toml and to SynthMed/CMakeLists.txt"
    )


STAND_IN_SLICER_CONFIG = textwrap.dedent(
    r"""
    # Stand-in for a Slicer build tree: records what the extension hands to Slicer's macros.
    set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
    set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/GenerateConfig.cmake)
    set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/CPack.cmake)
    set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.8/qt-scripted-modules)
    set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.8/qt-scripted-modules)
    set(RECORD ${CMAKE_BINARY_DIR}/record.txt)
    file(WRITE ${RECORD} "")
    macro(slicerMacroBuildScriptedModule)
      cmake_parse_arguments(M "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
      foreach(f IN LISTS M_SCRIPTS M_RESOURCES)
        if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${f})
          message(FATAL_ERROR "missing ${f}")
        endif()
        file(APPEND ${RECORD} "module|${CMAKE_CURRENT_SOURCE_DIR}/${f}|${f}\n")
      endforeach()
    endmacro()
    macro(ctkMacroCompilePythonScript)
      cmake_parse_arguments(C "NO_INSTALL_SUBDIR" "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR" "SCRIPTS;RESOURCES" ${ARGN})
      if(NOT C_DESTINATION_DIR STREQUAL "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}" OR NOT C_NO_INSTALL_SUBDIR)
        message(FATAL_ERROR "library not placed beside the module: ${C_DESTINATION_DIR}")
      endif()
      foreach(f IN LISTS C_SCRIPTS C_RESOURCES)
        if(NOT EXISTS ${C_SOURCE_DIR}/${f})
          message(FATAL_ERROR "missing ${f}")
        endif()
        file(APPEND ${RECORD} "library|${C_SOURCE_DIR}/${f}|${f}\n")
      endforeach()
    endmacro()
    macro(slicer_add_python_unittest)
    endmacro()
    """  # noqa: E501 (CMake text: Slicer's macro signatures, kept on one line)
)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed; the text checks above still ran")
def test_cmake_itself_bundles_the_whole_library(tmp_path):
    config = tmp_path / "slicer"
    config.mkdir()
    (config / "SlicerConfig.cmake").write_text(STAND_IN_SLICER_CONFIG)
    (config / "UseSlicer.cmake").write_text("")
    (config / "GenerateConfig.cmake").write_text("")
    (config / "CPack.cmake").write_text(
        'foreach(v HOMEPAGE CATEGORY CONTRIBUTORS DESCRIPTION ICONURL SCREENSHOTURLS DEPENDS)\n'
        '  file(APPEND ${RECORD} "extension|${v}|${EXTENSION_${v}}\\n")\nendforeach()\n'
    )
    build = tmp_path / "build"
    result = subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(build), f"-DSlicer_DIR={config}"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split("|", 2) for line in (build / "record.txt").read_text().splitlines()]
    library = {dest for kind, _src, dest in rows if kind == "library"}
    module = {dest for kind, _src, dest in rows if kind == "module"}
    extension = {name: value for kind, name, value in rows if kind == "extension"}
    assert "PyTorch" in extension["DEPENDS"].split()
    assert all(extension.values())
    assert {"SynthMed.py", "Resources/UI/SynthMed.ui", "Resources/Icons/SynthMed.png"} <= module
    assert "Resources/requirements.txt" in library
    missing = sorted(set(library_files()) - library)
    assert not missing, f"cmake does not bundle: {missing}"
    assert not [d for d in library if "__pycache__" in d]


# --- the module, icon and .ui -------------------------------------------------------------------


def test_module_file_follows_slicer_conventions():
    tree = ast.parse((MODULE_DIR / "SynthMed.py").read_text())
    bases = {
        node.name: {b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases}
        for node in tree.body if isinstance(node, ast.ClassDef)
    }
    assert "ScriptedLoadableModule" in bases["SynthMed"]
    assert {"ScriptedLoadableModuleWidget", "VTKObservationMixin"} <= bases["SynthMedWidget"]
    assert "ScriptedLoadableModuleLogic" in bases["SynthMedLogic"]
    assert "ScriptedLoadableModuleTest" in bases["SynthMedTest"]
    source = (MODULE_DIR / "SynthMed.py").read_text()
    for resource in re.findall(r'resourcePath\("([^"]+)"\)', source):
        assert (MODULE_DIR / "Resources" / resource).is_file(), resource
    assert 'resourcePath("UI/SynthMed.ui")' in source


def test_no_helper_module_beside_the_module_file():
    # Slicer loads every .py at the top of a module folder as a module of its own.
    assert [p.name for p in MODULE_DIR.glob("*.py")] == ["SynthMed.py"]


def test_icon_is_a_128_pixel_png():
    data = (MODULE_DIR / "Resources" / "Icons" / "SynthMed.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (128, 128)


def test_ui_file_is_a_qt_designer_file_with_the_five_sections():
    import xml.etree.ElementTree as ET

    root = ET.parse(MODULE_DIR / "Resources" / "UI" / "SynthMed.ui").getroot()
    assert root.tag == "ui" and root.find("class").text == "SynthMed"
    sections = [
        w.find("property[@name='text']/string").text
        for w in root.iter("widget") if w.get("class") == "ctkCollapsibleButton"
    ]
    assert sections == ["Model", "Generate", "Dataset", "Counterfactual aging", "Disease progression"]


def test_qt_free_logic_imports_with_slicer_core_only():
    # Every module of the package but panels*.py (the Qt wiring, imported only by SynthMed.py).
    names = sorted(p.stem for p in (MODULE_DIR / "SynthMedSlicer").glob("*.py")
                   if p.stem != "__init__" and not p.stem.startswith("panels"))
    assert {"logic", "volumes", "segmentations", "worker_client"} <= set(names)
    code = (
        "import sys, importlib; sys.path[:0] = ['SynthMed', '.']; import slicer; "
        f"[importlib.import_module('SynthMedSlicer.' + n) for n in {names!r}]; "
        # torch too: Slicer has it only with the PyTorch extension, which the worker needs, not the panel.
        "bad = [m for m in ('qt', 'ctk', 'PythonQt', 'torch') if m in sys.modules]; "
        "assert not bad, bad; assert hasattr(slicer, 'vtkMRMLScene')"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# --- dependencies and the Extensions Index entry ------------------------------------------------


def requirement_map(lines):
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name = re.match(r"[A-Za-z0-9_.\-]+", line).group(0)
            out[name.lower()] = line[len(name):].replace(" ", "")
    return out


def test_requirements_are_ranges_and_leave_slicer_packages_alone():
    required = requirement_map((ROOT / "Resources" / "requirements.txt").read_text().splitlines())
    assert required, "Resources/requirements.txt is empty"
    for name, spec in required.items():
        assert spec and "==" not in spec, f"{name}: give a range, not a pin"
    # Slicer ships these; replacing them breaks Slicer. torch comes from the PyTorch extension.
    assert not {"torch", "simpleitk", "numpy"} & required.keys()
    library = requirement_map(PYPROJECT["project"]["dependencies"])
    expected = {k: v for k, v in library.items() if k not in {"torch", "simpleitk", "numpy"}}
    assert required == expected, "Resources/requirements.txt must carry pyproject's ranges"


def test_extensions_index_entry_follows_the_catalog_schema():
    entry = json.loads((ROOT / "Resources" / "ExtensionsIndex" / "SynthMed.json").read_text())
    # Constraints of slicer-extension-catalog-entry-schema v1.0.x (additionalProperties: false).
    allowed = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
               "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
    assert set(entry) <= allowed, set(entry) - allowed
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert re.search(r"slicer-extension-catalog-entry-schema-v1\.0\.\d\.json#?$", entry["$schema"])
    assert isinstance(entry["tier"], int) and 1 <= entry["tier"] <= 5
    assert all(isinstance(d, str) for d in entry["build_dependencies"])
    assert entry["category"] == cmake_set(TOP_CMAKE, "EXTENSION_CATEGORY").strip('"')
    assert set(entry["build_dependencies"]) == set(cmake_set(TOP_CMAKE, "EXTENSION_DEPENDS").strip('"').split())
