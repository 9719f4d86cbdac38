import subprocess
import sys

from SynthMedLib import cli


def test_help_lists_every_command(capsys):
    parser = cli.build_parser()
    help_text = parser.format_help()
    for name in cli.COMMANDS:
        assert name in help_text


def test_progression_keeps_progress_as_an_alias():
    parser = cli.build_parser()
    common = ["--model", "demo-brain", "--baseline", "b.nii.gz", "--age", "70", "--sex", "F", "--diagnosis", "CN",
              "--years", "1", "--out", "o"]
    new, old = parser.parse_args(["progression", *common]), parser.parse_args(["progress", *common])
    assert new.func is old.func and vars(new) == {**vars(old), "command": "progression"}


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "SynthMedLib.cli", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("synthmed ")
