import subprocess
import sys

from SynthMedLib import cli


def test_help_lists_every_command(capsys):
    parser = cli.build_parser()
    help_text = parser.format_help()
    for name in cli.COMMANDS:
        assert name in help_text


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "SynthMedLib.cli", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("synthmed ")
