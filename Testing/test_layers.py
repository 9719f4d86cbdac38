"""The layers of docs/DESIGN.md hold: the engine and the worker (SynthMedLib/pipelines, sampling, spaces,
weights, worker) never import the simulated cohort, the evaluation code, the benchmarks or the
tests, and SynthMedLib never imports Slicer. Read from the source (every import statement, also
those inside functions), so an import added on a rarely run path is caught too."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ("pipelines", "sampling", "spaces", "weights", "worker")
# Evaluation tools sit above the engine; the engine must run without them.
FORBIDDEN_IN_ENGINE = ("SynthMedLib.cohort", "SynthMedLib.evaluate", "bench", "score_common", "Testing",
                       "conftest", "pipeline_fixtures", "spaces_fixtures", "train_helpers", "weights_server")
NEVER_IN_LIBRARY = ("slicer", "qt", "ctk", "vtk", "SynthMedSlicer")


def imports(path, root):
    """(line, [names]) of every import statement in ``path``: the module and, for ``from X import
    y``, also ``X.y`` (``from SynthMedLib import cohort``); relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(root).with_suffix("").parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, [alias.name]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            yield node.lineno, [module] + [f"{module}.{alias.name}" for alias in node.names]


def violations(folders, forbidden, root=ROOT):
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            for line, names in sorted(imports(path, root)):
                bad = [name for name in names if any(name == f or name.startswith(f + ".") for f in forbidden)]
                if bad:
                    found.append(f"{path.relative_to(root).as_posix()}:{line} imports {bad[0]}")
    return found


def test_the_engine_and_worker_import_no_evaluation_bench_or_test_code():
    assert violations([f"SynthMedLib/{name}" for name in ENGINE], FORBIDDEN_IN_ENGINE) == []


def test_the_library_never_imports_slicer():
    assert violations(["SynthMedLib"], NEVER_IN_LIBRARY) == []


def test_the_check_sees_imports_inside_functions_and_relative_ones(tmp_path):
    worker = tmp_path / "SynthMedLib" / "worker"
    worker.mkdir(parents=True)
    (worker / "handler.py").write_text(
        "import os\nfrom SynthMedLib.worker import files\n\n\ndef handler():\n    if True:\n"
        "        from SynthMedLib.cohort import render\n    from .. import evaluate\n    import bench.score_common\n")
    assert violations(["SynthMedLib/worker"], FORBIDDEN_IN_ENGINE, root=tmp_path) == [
        "SynthMedLib/worker/handler.py:7 imports SynthMedLib.cohort",
        "SynthMedLib/worker/handler.py:8 imports SynthMedLib.evaluate",
        "SynthMedLib/worker/handler.py:9 imports bench.score_common",
    ]


# Hashing a file (sha256 of weights, of written outputs) has one home; download.py hashes the bytes
# as they stream in, to verify them before the file is renamed into place.
HASHES_FILES = ("SynthMedLib/weights/hashing.py", "SynthMedLib/weights/download.py")


def functions_hashing_files(root=ROOT):
    found = []
    for path in sorted((root / "SynthMedLib").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in HASHES_FILES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            uses_hashlib = any(isinstance(n, ast.Name) and n.id == "hashlib" for n in ast.walk(node))
            reads = any(isinstance(n, ast.Call) and (
                (isinstance(n.func, ast.Name) and n.func.id == "open")
                or (isinstance(n.func, ast.Attribute) and n.func.attr in ("open", "read", "read_bytes")))
                for n in ast.walk(node))
            if uses_hashlib and reads:
                found.append(f"{rel}:{node.lineno} {node.name}")
    return found


def test_files_are_hashed_only_by_weights_hashing():
    assert functions_hashing_files() == []


def test_the_hashing_check_finds_a_copy(tmp_path):
    copy = tmp_path / "SynthMedLib" / "storage"
    copy.mkdir(parents=True)
    (copy / "writer.py").write_text(
        "import hashlib\n\n\ndef file_sha256(path):\n    digest = hashlib.sha256()\n"
        "    with open(path, 'rb') as f:\n        digest.update(f.read())\n    return digest.hexdigest()\n\n\n"
        "def key(text):\n    return hashlib.sha256(text.encode()).hexdigest()\n")
    assert functions_hashing_files(tmp_path) == ["SynthMedLib/storage/writer.py:4 file_sha256"]
