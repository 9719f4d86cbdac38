"""Subcommands of the ``synthmed`` command, one module each.

Each module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a
function taking the parsed arguments and returning an exit code. Heavy imports (torch, MONAI,
SimpleITK) happen inside those functions so that ``synthmed --help`` stays instant.
"""
