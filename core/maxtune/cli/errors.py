"""How every `maxtune` command fails: one line on stderr and an exit code, never a traceback.

Bad input and missing configuration exit 2 (`CliError`, `maxtune.kube.ConfigError`, and
argparse's own errors, shortened to one line); a cluster that answers with an error exits 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class CliError(Exception):
    """Bad input to a command: the message says what is wrong and how to fix it (exit 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def fail(prog: str, message: object, code: int) -> int:
    print(f"{prog}: {' '.join(str(message).split())}", file=sys.stderr)
    return code
