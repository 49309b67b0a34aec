"""`python -m whatsapp doctor`: check that this machine can run the server (whatsapp/doctor).

Exit status: the doctor's (0 all passed, warnings allowed; 1 a check failed); 2 for usage.
"""
from __future__ import annotations

import os
import sys

USAGE = "usage: python -m whatsapp doctor"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["doctor"]:
        print(USAGE, file=sys.stderr)
        return 2
    from .doctor import run

    return run(os.environ)


if __name__ == "__main__":
    sys.exit(main())
