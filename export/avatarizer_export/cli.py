"""The ``avatarizer-export`` command line (training side)."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="avatarizer-export",
                                 description="Data building, training, evaluation and model export.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("schema", help="regenerate schema.json, native/avz_schema.h and docs/schema.md")
    s.add_argument("--check", action="store_true", help="exit 1 if the committed files are stale")
    args, rest = ap.parse_known_args(argv)
    if args.command == "schema":
        from . import schemagen

        return schemagen.main(["--check"] if args.check else [])
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
