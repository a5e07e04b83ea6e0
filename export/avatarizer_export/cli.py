"""The ``avatarizer-export`` command line (training side)."""
from __future__ import annotations

import argparse
import sys


def _schema(args) -> int:
    from . import schemagen

    return schemagen.main(["--check"] if args.check else [])


def _recover() -> None:
    """Finishes a commit into the shipped folders that an earlier run cut
    short (``make models`` commits two folders one after the other), before
    any command reads or writes them; nothing without a commit marker."""
    from . import pipeline, staging

    staging.recover(folder for folder, _ in pipeline.shipped_folders())


def build_parser() -> argparse.ArgumentParser:
    from . import (attributes, beardgrey, data, detectors, evaluate, eyelabels, facialhair, gender, haircolournet,
                   hairbank,
                   hairlength, hairlengthnet,
                   hatnet, hats, pipeline, report, rethreshold, sheets, ship, skintone, skintonenet, train)

    ap = argparse.ArgumentParser(prog="avatarizer-export",
                                 description="Data building, training, evaluation and model export.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("schema", help="regenerate schema.json, native/avz_schema.h and docs/schema.md")
    s.add_argument("--check", action="store_true", help="exit 1 if the committed files are stale")
    s.set_defaults(func=_schema)
    data.add_parser(sub)
    train.add_parser(sub)
    evaluate.add_parser(sub)
    report.add_parser(sub)
    sheets.add_parser(sub)
    ship.add_parser(sub)
    attributes.add_parser(sub)
    rethreshold.add_parser(sub)
    hairbank.add_parser(sub)
    detectors.add_parser(sub)
    eyelabels.add_parser(sub)
    hats.add_parser(sub)
    facialhair.add_parser(sub)
    haircolournet.add_parser(sub)
    hairlengthnet.add_parser(sub)
    hatnet.add_parser(sub)
    skintone.add_parser(sub)
    skintonenet.add_parser(sub)
    hairlength.add_parser(sub)
    gender.add_parser(sub)
    beardgrey.add_parser(sub)
    pipeline.add_parser(sub)
    return ap


class _Stopped(BaseException):
    """A stop signal (SIGTERM, SIGHUP) raised where the command was: the
    ``finally`` blocks run, so a staged file (a checkpoint's ``.part``, a
    model's temporary copy) is deleted, as Ctrl-C's KeyboardInterrupt does
    (SIGTERM ended the process at once and left them; a review, session 76)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_stop(signum, frame):
    import signal

    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):  # (a second one does not cut the clean-up
        if sig is not None:  # short; main puts the handlers back)
            signal.signal(sig, signal.SIG_IGN)
    raise _Stopped(signum)


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 2
    import signal
    import threading

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:  # (nohup's stays ignored)
                handlers[sig] = signal.signal(sig, _on_stop)
    try:
        return _run(args)
    except _Stopped as exc:  # (a stop signal in the clean-up of _run itself)
        return _stopped(args, exc)
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)


def _stopped(args, exc: "_Stopped") -> int:
    try:
        print(f"avatarizer-export {args.command}: stopped by signal {exc.signum}", file=sys.stderr)
    except _Stopped:  # pragma: no cover - a second signal while saying so
        pass
    return 128 + exc.signum


def _run(args) -> int:
    import zipfile

    from avatarizer.errors import ModelError
    from avatarizer.logfilter import FILTER

    try:
        from google.protobuf.message import DecodeError  # (what onnx.load raises on a cut or foreign file)
    except ImportError:  # pragma: no cover - onnx brings protobuf
        DecodeError = ()
    interrupted = False
    stopped = None
    code = 1
    try:
        FILTER.start()  # MediaPipe's start-up lines off stderr (avatarizer.logfilter)
        _recover()
        code = args.func(args)
    # (a missing file, a folder where a file belongs, a models folder without its manifest, ...)
    except (OSError, RuntimeError, ValueError, ModelError) as exc:
        print(f"avatarizer-export {args.command}: {exc}", file=sys.stderr)
        code = 1
    except (zipfile.BadZipFile, EOFError) as exc:  # an .npz cut short, empty or not one (numpy.load): one line
        print(f"avatarizer-export {args.command}: a .npz file it read is cut short or not a .npz file ({exc})",
              file=sys.stderr)
        code = 1
    except DecodeError as exc:  # a cut or foreign ONNX file: one line
        print(f"avatarizer-export {args.command}: an ONNX file it read is not a readable model (cut or not "
              f"ONNX): {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        interrupted = True
    except _Stopped as exc:
        stopped = exc
    finally:
        try:
            FILTER.stop()
        except KeyboardInterrupt:  # Ctrl-C just after the command's work ended: the same one line, not a traceback
            interrupted = True
    if stopped is not None:
        return _stopped(args, stopped)
    if interrupted:  # Ctrl-C: one line, not a traceback; 130 as a shell reports SIGINT
        try:
            print(f"avatarizer-export {args.command}: interrupted", file=sys.stderr)
        except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C while saying so
            pass
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
