"""One output policy for every command that writes a folder or a file: nothing a user had is lost.

- A non-empty target folder is refused unless `--overwrite` is given AND jamspotter wrote it (it holds
  the `.jamspotter-output` marker); a folder with files jamspotter did not write is never deleted.
- Folders are written into a staging folder beside the target and swapped in on success, so an
  error or Ctrl-C leaves the old folder as it was and no stale files survive an overwrite.
- An existing file is replaced only with `--overwrite` (atomically, see `data.io.atomic_write`).
- A command never writes into its own input (the same path, inside it, or around it).
- New files and folders get the modes the umask allows (not mkstemp's 0600).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from jamspotter.errors import OutputError

MARKER = ".jamspotter-output"


def umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | Path, directory: bool = False) -> None:
    """Give a temp file/folder (created 0600/0700) the mode a plain open()/mkdir() would have given it."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def _resolved(p: str | Path) -> Path:
    return Path(p).expanduser().resolve()


def check_not_input(out: str | Path, inputs: Iterable[str | Path | None]) -> None:
    """Refuse an output that is an input (a dataset folder counts with its samples.jsonl) or holds one inside it.

    A new folder or file inside an input folder is allowed (it replaces nothing of the input); replacing
    or deleting `out` must never touch an input.
    """
    o = _resolved(out)
    for i in inputs:
        if i is None:
            continue
        src = _resolved(i)
        own = {src} | ({src / "samples.jsonl"} if src.is_dir() else set())
        if o in own or any(o in p.parents for p in own):
            raise OutputError(f"{out}: refusing to write over the command's own input {i}; choose another output")


def is_ours(folder: str | Path) -> bool:
    """True when `folder` was written by a jamspotter command (it holds the marker)."""
    return (Path(folder) / MARKER).is_file()


def is_empty_dir(folder: str | Path) -> bool:
    """True for a folder with no entries at all."""
    return Path(folder).is_dir() and not any(Path(folder).iterdir())


def check_output_dir(out: str | Path, *, overwrite: bool, inputs: Iterable[str | Path | None] = (),
                     option: str = "--overwrite") -> None:
    """Raise OutputError unless `out` may be (re)written: new, empty, or ours with `overwrite`."""
    out = Path(out)
    check_not_input(out, inputs)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    if not out.exists() or is_empty_dir(out):
        return
    if not is_ours(out):
        raise OutputError(f"{out}: folder is not empty and holds files jamspotter did not write; "
                          "choose a new folder (nothing was changed)")
    if not overwrite:
        raise OutputError(f"{out}: folder is not empty (an earlier output); pass {option} to replace it")
    foreign = foreign_files(out)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise OutputError(f"{out}: holds files jamspotter did not write ({', '.join(foreign[:3])}{more}); "
                          "move them out or choose a new folder (nothing was changed)")


def listing(folder: str | Path) -> list[str]:
    """Every file (and link) below `folder` as a relative posix path, sorted; the marker and folders left out."""
    folder = Path(folder)
    out = []
    for root, dirs, files in os.walk(folder):  # links to folders are listed, not followed
        here = Path(root)
        out += [(here / name).relative_to(folder).as_posix() for name in files]
        out += [(here / d).relative_to(folder).as_posix() for d in dirs if (here / d).is_symlink()]
    return sorted(p for p in out if p != MARKER)


def foreign_files(folder: str | Path) -> list[str]:
    """Files below one of our folders that the command did not write (added by someone since).

    An output written in place whose command has not finished (or was stopped) has no list yet:
    everything in it counts as the command's own.
    """
    try:
        written = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        written = None
    if not isinstance(written, list):
        return []
    known = set(written)
    return [p for p in listing(folder) if p not in known]


def write_marker(folder: str | Path, command: str, files: list[str] | None = None) -> None:
    """Mark `folder` as written by `command`, with the files it wrote (what a later `--overwrite` may replace).

    `files=None` marks an output that is still being written in place (see `prepare_dir`, `record_files`).
    """
    path = Path(folder) / MARKER
    record = {"command": command, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    apply_umask(path)


def record_files(folder: str | Path) -> None:
    """At the end of an in-place output: note the files it now holds as the command's own."""
    path = Path(folder) / MARKER
    try:
        command = json.loads(path.read_text(encoding="utf-8")).get("command", "jamspotter")
    except (OSError, ValueError, AttributeError):
        return
    write_marker(folder, command, listing(folder))


@contextlib.contextmanager
def output_dir(out: str | Path, command: str, *, overwrite: bool = False,
               inputs: Iterable[str | Path | None] = ()) -> Iterator[Path]:
    """Yield a staging folder to write into; on success it replaces `out` whole, on any error it is removed.

    The previous folder (if any) survives every failure, including Ctrl-C and SIGTERM turned into
    an exception; after success `out` holds exactly what the block wrote, plus the marker.
    """
    out = Path(out)
    inputs = list(inputs)
    check_output_dir(out, overwrite=overwrite, inputs=inputs)
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=parent))
    except OSError as e:
        raise OutputError(f"{out}: cannot write here ({e.strerror or e})") from None
    apply_umask(stage, directory=True)
    try:
        yield stage
        write_marker(stage, command, listing(stage))
        check_output_dir(out, overwrite=overwrite, inputs=inputs)  # nothing else appeared meanwhile
        replace_dir(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    try:
        rename2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if rename2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(new: Path, out: Path) -> None:
    """Move `new` onto `out`; an old `out` survives until the new one is in place, then it is removed.

    On Linux the two folders are swapped in one atomic step, so even a SIGKILL leaves `out` complete
    (old or new) and at worst the other one under the staging name beside it.
    """
    if out.is_dir() and not out.is_symlink() and _exchange(new, out):
        shutil.rmtree(new, ignore_errors=True)  # `new` now names the old folder
        return
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def prepare_dir(out: str | Path, command: str, *, overwrite: bool = False,
                inputs: Iterable[str | Path | None] = (), option: str = "--overwrite") -> Path:
    """For outputs written in place as work goes (logs appended per frame, checkpoints): check, clear, mark.

    With `overwrite`, an earlier output of ours is removed whole first (no stale files). The command calls
    `record_files` when it ends, so files added to the folder later are never deleted by an overwrite.
    """
    out = Path(out)
    check_output_dir(out, overwrite=overwrite, inputs=inputs, option=option)
    if out.exists() and not is_empty_dir(out):
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, command)
    except OSError as e:
        raise OutputError(f"{out}: cannot write here ({e.strerror or e})") from None
    return out


def check_output_file(out: str | Path, *, overwrite: bool, inputs: Iterable[str | Path | None] = (),
                      option: str = "--overwrite") -> Path:
    """Refuse an existing file without `overwrite`, a folder, and any path that is or lies in an input."""
    out = Path(out)
    inputs = list(inputs)
    check_not_input(out, inputs)
    if out.is_dir():
        raise OutputError(f"{out}: is a folder; give a file path")
    if out.exists() and any(i is not None and _resolved(i) in _resolved(out).parents for i in inputs):
        raise OutputError(f"{out}: is a file of the command's own input; choose another output")
    if out.exists() and not overwrite:
        raise OutputError(f"{out}: exists; pass {option} to replace it")
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:  # the folders still to be made go here
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: folder {parent} is not writable")
    return out


@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """Inside the block SIGTERM (and SIGHUP) raise KeyboardInterrupt, as Ctrl-C does.

    So `output_dir` and other cleanup run on `kill` as on Ctrl-C: staging folders are removed and the
    previous output stays as it was. Outside the main thread (where Python cannot set handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, _raise) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
