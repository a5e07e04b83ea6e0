"""Staged shipping: the steps that change a shipped folder
(``sdk/avatarizer/models``, ``sdk/avatarizer/data``) write into a staging
copy of it, and one commit swaps the copy in, so a step that fails or a run
that is interrupted leaves the shipped folder exactly as it was.

* :func:`begin` makes the copy, ``.<name>.staging`` beside the folder (the
  same file system, so the commit is a few renames): the folder's
  ``manifest.json``, every file it lists and the ``extra`` files named (the
  gate report; the data files the steps rewrite). Files the manifest does
  not list (a user's) are not copied and never touched.
* :func:`commit` moves the staged files onto the folder's, the manifest
  last, then deletes the files the old manifest listed and the new one does
  not (only those). It refuses, before changing anything, to overwrite a
  file the old manifest did not list. It first writes a marker into the
  copy: a commit cut short is finished by the next :func:`begin` of the
  folder or :func:`recover`. :func:`commit_all` writes one marker per
  folder; one cut short before the last marker was written is not applied.
* :func:`discard` removes the copy.
* :func:`outside` stages a file that lives outside the folder but must
  follow what it ships (H's predictions, ``runs/attributes/predictions.npz``):
  written into the copy, moved onto its place by the commit (after the
  manifest), discarded with the copy. Committed into a copy (a step staged
  inside ``make models``' staging copy), it moves into that copy's own
  outside files and waits for the outer commit.
* :func:`recover` finishes the commits cut short (a marker in the copy) of
  some folders; every ``avatarizer-export`` command runs it first on the
  shipped folders (:func:`avatarizer_export.pipeline.shipped_folders`).

One run ships into a folder at a time: :func:`begin` takes an exclusive
lock on the folder (``.<name>.lock`` beside it, an ``flock``: the system
drops it when the process ends, however it ends), held until the copy is
committed or discarded. A second run that stages the same folder stops at
once with :class:`Busy` instead of discarding the first run's copy, and
:func:`recover` leaves a folder another run holds alone (its commit is in
progress, not cut short). Staging copies of staging copies (a step staged
inside ``make models``' copy) are covered by the outer run's lock.

:func:`staged_folder` is the one-folder form: a copy, committed when the
block succeeds, discarded when it raises.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Iterable, Iterator

from .onnx_util import staged

MANIFEST = "manifest.json"
#: the locks this process holds: {resolved folder: open lock file}
_LOCKS: dict = {}
MARKER = ".commit.json"
#: the copy's files outside the folder (:func:`outside`): {name in the copy: destination}
OUTSIDE = ".outside.json"


def staging_path(target: Path) -> Path:
    """Where :func:`begin` stages ``target``: ``.<name>.staging`` beside it."""
    target = Path(target)
    return target.with_name(f".{target.name}.staging")


def unstaged(path: Path) -> Path:
    """``path`` with its staging folders named as the folders they stage
    (where a staged file will be once committed)."""
    parts = list(Path(path).parts)
    for i, part in enumerate(parts):
        while is_staging(part):
            part = part[1:-len(".staging")]
        parts[i] = part
    return Path(*parts)


def is_staging(path: Path) -> bool:
    """True when ``path`` is a staging copy (``.<name>.staging``)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(".staging") and len(name) > len("..staging")


def listed_files(folder: Path) -> set[str]:
    """The files ``folder/manifest.json`` lists (relative, inside the folder)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        return set()
    models = json.loads(path.read_text(encoding="utf-8")).get("models", {})
    root = folder.resolve()
    out = set()
    for entry in models.values():
        rel = entry.get("file") if isinstance(entry, dict) else None
        if isinstance(rel, str) and rel and root in (root / rel).resolve().parents:
            out.add(Path(rel).as_posix())
    return out


class Busy(RuntimeError):
    """Another process is shipping into the folder (holds its lock)."""


def lock_path(target: Path) -> Path:
    """The lock file of ``target``: ``.<name>.lock`` beside it."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


def _lock(target: Path, wait: bool = False) -> bool:
    """Takes ``target``'s lock for this process (see the module); True when
    taken (or held already), False when another process holds it. Staging
    copies are not locked (their run holds the folder's lock): True."""
    target = Path(target)
    key = str(target.resolve())
    if key in _LOCKS or is_staging(target):
        return True
    try:
        import fcntl
    except ImportError:  # (no flock: Windows) unlocked, as before
        return True
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.close()
            return False
        except BaseException:
            f.close()
            raise
        try:  # the file we locked is still the lock (not unlinked by a holder releasing it meanwhile)
            same = os.path.samestat(os.fstat(f.fileno()), os.stat(path))
        except FileNotFoundError:
            same = False
        except BaseException:
            f.close()
            raise
        if same:
            break
        f.close()
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
    except BaseException:
        f.close()
        raise
    _LOCKS[key] = f
    return True


def _unlock(target: Path) -> None:
    """Lets go of ``target``'s lock if this process holds it (the file removed first)."""
    f = _LOCKS.pop(str(Path(target).resolve()), None)
    if f is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(lock_path(target))
    f.close()  # (closing drops the flock)


def _holder(target: Path) -> str:
    try:
        pid = lock_path(target).read_text().strip()
    except OSError:
        pid = ""
    return f" (process {pid})" if pid.isdigit() else ""


def _lock_or_busy(target: Path) -> None:
    """Takes ``target``'s lock (:func:`_lock`), or :class:`Busy` when another process holds it."""
    if not _lock(target):
        raise Busy(f"{target}: another avatarizer-export run is shipping into it{_holder(target)}; "
                   f"let it finish (or stop it) and run this again. Nothing was changed.")


def check_free(target: Path) -> None:
    """:class:`Busy` when another process holds ``target``'s lock now (a run
    about to spend hours before it stages, ``make models``, asks first; the
    lock is not kept)."""
    target = Path(target)
    held = str(target.resolve()) in _LOCKS
    _lock_or_busy(target)
    if not held:
        _unlock(target)


def begin(target: Path, extra: Iterable[str] = ()) -> Path:
    """A fresh staging copy of ``target`` (see the module); returns its path.
    Takes the folder's lock (:class:`Busy` when another run holds it:
    nothing is changed). A commit cut short is finished first
    (:func:`_finish_cut_short`); an uncommitted copy left by an interrupted
    run is discarded."""
    target = Path(target)
    _lock_or_busy(target)
    try:
        return _begin(target, extra)
    except BaseException:
        _unlock(target)
        raise


def _begin(target: Path, extra: Iterable[str]) -> Path:
    stage = staging_path(target)
    if (stage / MARKER).is_file() and _finish_cut_short(stage, target) is None:
        # a decided commit whose other folder another run holds: removing this half would ship the
        # other half alone for good
        raise Busy(f"{target}: its last commit was cut short and another avatarizer-export run holds one of "
                   f"its folders; let that run finish and run this again. Nothing was changed.")
    _remove_copy(target)
    stage.mkdir(parents=True)
    names = listed_files(target) | {n for n in extra if (target / n).is_file()}
    if (target / MANIFEST).is_file():
        names.add(MANIFEST)
    for rel in sorted(names):
        src = target / rel
        if src.is_file():
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, stage / rel)
    return stage


def discard(target: Path) -> None:
    """Removes ``target``'s staging copy (nothing shipped changes), with a
    copy of that copy a step staged inside it left behind (it belongs to
    the run being discarded), and lets go of the folder's lock. A copy
    another process holds the lock of is left alone (:class:`Busy`)."""
    target = Path(target)
    if not _lock(target):
        raise Busy(f"{target}: another avatarizer-export run is shipping into it{_holder(target)}: "
                   f"its staging copy is left alone")
    try:
        _remove_copy(target)
    finally:
        _unlock(target)


def _remove_copy(target: Path) -> None:
    stage = staging_path(Path(target))
    if staging_path(stage).exists():
        _remove_copy(stage)
    if stage.exists():
        shutil.rmtree(stage)


def outside(stage: Path, dest: Path) -> Path:
    """Where to write, inside the staging copy ``stage``, a file that belongs
    at ``dest`` outside the folder and must follow the commit (see the
    module): the commit moves it onto ``dest`` (after the manifest), a
    discard deletes it; a file not written by then is left out. The name is
    the same for the same ``dest`` (a step can read what it staged with
    :func:`outside_path`). Write it atomically: the commit moves what is there."""
    stage, dest = Path(stage), Path(dest).resolve()
    path = outside_path(stage, dest)
    index = _outside(stage)
    if index.get(path.name) != str(dest):
        index[path.name] = str(dest)
        _write_json(stage / OUTSIDE, index)
    return path


def outside_path(stage: Path, dest: Path) -> Path:
    """The path :func:`outside` gives ``dest`` in ``stage`` (hidden: never
    moved into the folder itself)."""
    dest = Path(dest).resolve()
    return Path(stage) / f".outside.{hashlib.sha1(str(dest).encode()).hexdigest()[:10]}.{dest.name}"


def _outside(stage: Path) -> dict:
    path = Path(stage) / OUTSIDE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _write_json(path: Path, doc) -> None:
    with staged(path, "part") as tmp:  # atomic
        tmp.write_text(json.dumps(doc))


def _move(src: Path, dst: Path) -> None:
    """``os.replace``; across file systems a copy beside ``dst`` renamed onto it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.moving")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
        os.unlink(src)


def recover(targets: Iterable[Path], log=None) -> list[Path]:
    """Finishes the commits of ``targets`` that were cut short (their copy
    holds the commit's marker; each with its other folders, in its order:
    :func:`_finish_cut_short`); returns the folders finished and,
    when there are any, says so in one line on stderr (or to ``log``). A
    copy without a marker (a run in progress, or one interrupted before its
    commit) is left alone: the next :func:`begin` discards it. Without a
    marker it costs a ``stat`` per folder."""
    done = []
    for target in targets:
        target = Path(target)
        stage = staging_path(target)
        if (stage / MARKER).is_file():
            done += _finish_cut_short(stage, target) or []  # (None: another run holds one of its folders)
    if done:
        msg = f"staging: finished the commit an earlier run cut short (into {', '.join(map(str, done))})"
        if log is None:
            print(msg, file=sys.stderr, flush=True)
        else:
            log(msg)
    return done


def _staged(stage: Path) -> list[str]:
    return sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*")
                  if p.is_file() and p.name not in (MANIFEST, MARKER) and not p.name.startswith("."))


def commit(target: Path, extra: Iterable[str] = ()) -> list[str]:
    """Swaps ``target``'s staging copy in (see the module); returns the files
    deleted (listed before, no longer listed). ``RuntimeError``, with nothing
    changed, when a staged file would overwrite one of ``target``'s files
    that its manifest does not list (nor names in ``extra``)."""
    return commit_all([(target, extra)])


def commit_all(targets: Iterable[tuple[Path, Iterable[str]]]) -> list[str]:
    """:func:`commit` of several folders (each ``(target, extra)``): every
    folder is checked before any is changed, and the last one's manifest is
    the last file moved (pass the models folder last). The folders' locks
    are let go of afterwards, whether it succeeds or not."""
    targets = [(Path(t), e) for t, e in targets]
    try:
        return _commit_all(targets)
    finally:
        for target, _ in targets:
            _unlock(target)


def _commit_all(targets: list) -> list[str]:
    plans = []
    for target, extra in targets:
        target = Path(target)
        stage = staging_path(target)
        if not stage.is_dir():
            raise RuntimeError(f"{target}: nothing staged to commit")
        old = listed_files(target)
        ours = old | set(extra)
        clash = [rel for rel in _staged(stage) if (target / rel).exists() and rel not in ours]
        if clash:
            raise RuntimeError(f"{target}: not shipping: {', '.join(clash)} there is not listed in its manifest "
                               f"(a file of someone else's; move it away and run again); nothing was changed, "
                               f"the staged files are in {stage}")
        new = listed_files(stage) if (stage / MANIFEST).is_file() else old
        plans.append((stage, target, sorted(old - new)))
    # one marker per folder, naming the commit and its folders in order: the
    # commit is decided once the last one is written (_finish_cut_short)
    commit_id = os.urandom(8).hex()
    for stage, _, delete in plans:
        # the folders relative to this copy's parent: a checkout moved before the next run still finishes it
        group = [[os.path.relpath(s, stage.parent), os.path.relpath(t, stage.parent)] for s, t, _ in plans]
        _write_json(stage / MARKER, {"delete": delete, "commit": commit_id, "folders": group})
    return [rel for stage, target, _ in plans for rel in _finish(stage, target)]


def _marker(stage: Path) -> dict | None:
    try:
        return json.loads((Path(stage) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _finish_cut_short(stage: Path, target: Path) -> list[Path] | None:
    """Finishes the commit whose marker ``stage`` holds, with the other
    folders of the same :func:`commit_all`, in its order; returns the
    folders finished. A commit cut short while its markers were being
    written (the last folder's marker missing) was never decided: nothing of
    it is applied (``[]``) and the next :func:`begin` discards its copies,
    so the folders never ship half of one commit. None (nothing done, and
    the copies must be kept: not discarded by :func:`begin`) when another
    process holds the lock of one of its folders."""
    mark = _marker(stage)
    if mark is None:
        return []
    # relative to this copy's parent (absolute in markers written before), or one folder's
    folders = [[Path(stage).parent / s, Path(stage).parent / t] for s, t in mark.get("folders") or []] \
        or [[Path(stage), Path(target)]]
    last = _marker(Path(folders[-1][0]))
    if last is None or last.get("commit") != mark.get("commit"):
        return []
    taken = []  # the other folders' locks, for as long as their halves are moved
    try:
        for _, t in folders:
            held = str(Path(t).resolve()) in _LOCKS
            if not _lock(Path(t)):
                return None
            if not held:
                taken.append(Path(t))
        done = []
        for s, t in folders:  # the earlier folders first: the same order as commit_all
            m = _marker(Path(s))
            if m is not None and m.get("commit") == mark.get("commit"):
                _finish(Path(s), Path(t))
                done.append(Path(t))
        return done
    finally:
        for t in taken:
            _unlock(t)


def _finish(stage: Path, target: Path) -> list[str]:
    """The moves of a commit (idempotent: a commit cut short is run again)."""
    delete = json.loads((stage / MARKER).read_text())["delete"]
    target.mkdir(parents=True, exist_ok=True)
    for rel in _staged(stage):
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / rel, target / rel)
    if (stage / MANIFEST).is_file():
        os.replace(stage / MANIFEST, target / MANIFEST)  # last: what the SDK reads
    root = target.resolve()
    gone = []
    for rel in delete:
        f = (target / rel).resolve()
        if f.is_file() and root in f.parents:
            f.unlink()
            gone.append(rel)
    for name, dest in _outside(stage).items():  # the files outside the folder that follow it
        if (stage / name).is_file():
            _move(stage / name, outside(target, dest) if is_staging(target) else Path(dest))
    shutil.rmtree(stage)
    return gone


@contextlib.contextmanager
def staged_folder(target: Path, extra: Iterable[str] = ()) -> Iterator[Path]:
    """A staging copy of ``target``: committed when the block succeeds,
    discarded when it raises."""
    extra = tuple(extra)
    stage = begin(target, extra)
    try:
        yield stage
    except BaseException:
        discard(target)
        raise
    commit(target, extra)
