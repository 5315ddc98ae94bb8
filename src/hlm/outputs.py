"""One rule for every file hlm writes (simulated data, study reports and tables, plots,
predictions and random effects), checked before any work starts:

* the extension names the format, and must be one the writer knows;
* the folder must exist and accept a new file (probed by creating and removing one);
* an existing file is replaced only when asked (``overwrite=True``; the CLI's ``--force``),
  else :class:`~hlm.errors.FileError`.

The CLI runs its commands within :func:`force_spelling` so the messages name ``--force``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hlm.errors import FileError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_FORCE: ContextVar[str] = ContextVar("hlm_force_option", default="overwrite=True")


@contextlib.contextmanager
def force_spelling(option: str) -> Iterator[None]:
    """Within the block, refusals to replace a file suggest ``option`` (the CLI's ``--force``)."""
    token = _FORCE.set(option)
    try:
        yield
    finally:
        _FORCE.reset(token)


def writable_folder(folder: Path, path: str | os.PathLike) -> None:
    """FileError unless ``folder`` exists and a file can be created in it."""
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise FileError(f"cannot write '{path}': the folder '{folder}' {what}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".hlm-probe-", dir=folder)
    except OSError as exc:
        raise FileError(
            f"cannot write '{path}': the folder '{folder}' is not writable ({exc.strerror or exc})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def output_file(path: str | os.PathLike, formats: Mapping[str, str], *, overwrite: bool = False) -> tuple[Path, str]:
    """The target of a writer and its format (``formats``: extension -> format name), after
    the checks of the module docstring."""
    if not isinstance(path, (str, os.PathLike)):
        raise FileError(f"an output file is named by a path, not {type(path).__name__} ({path!r:.40})")
    target = Path(path)
    kind = formats.get(target.suffix.lower())
    if kind is None:
        raise FileError(
            f"cannot write '{path}': unsupported extension '{target.suffix or '(none)'}'; use "
            f"{', '.join(sorted(formats))}"
        )
    writable_folder(target.parent, path)
    if target.is_dir():
        raise FileError(f"cannot write '{path}': it is a folder")
    if target.exists() and not overwrite:
        raise FileError(f"'{path}' already exists; pass {_FORCE.get()} to replace it, or choose another name")
    return target, kind


def output_folder(path: str | os.PathLike, *, overwrite: bool = False, suffix: str = ".parquet") -> Path:
    """A folder to be filled with ``suffix`` files: new or empty, or -- with ``overwrite`` --
    one that holds only such files (what an earlier run wrote)."""
    if not isinstance(path, (str, os.PathLike)):
        raise FileError(f"an output folder is named by a path, not {type(path).__name__} ({path!r:.40})")
    target = Path(path)
    writable_folder(target.parent, path)
    if target.exists():
        if not target.is_dir():
            raise FileError(f"'{path}' already exists and is not a folder; remove it or choose another")
        entries = list(target.iterdir())
        if entries and not overwrite:
            raise FileError(
                f"'{path}' already exists and is not an empty folder; pass {_FORCE.get()} to replace "
                "it, or choose another"
            )
        if any(e.is_dir() or e.suffix.lower() != suffix for e in entries):
            raise FileError(f"'{path}' holds files other than {suffix} files; remove it or choose another")
    return target


IMAGE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg", ".jpg": "jpeg", ".jpeg": "jpeg"}


def save_figure(fig: Figure, file: Any, *, overwrite: bool = False) -> None:
    """Save ``fig`` to ``file`` in the format its extension names, under a temporary name
    first (the file appears only when complete); see the module docstring for the checks.
    A file object is written as PNG."""
    if not isinstance(file, (str, os.PathLike)):
        if not hasattr(file, "write"):
            raise FileError(f"file= takes a path or a writable file object, not {type(file).__name__}")
        fig.savefig(file, dpi=120)
        return
    target, kind = output_file(file, IMAGE_FORMATS, overwrite=overwrite)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        fig.savefig(tmp, dpi=120, format=kind)
        os.replace(tmp, target)
    except OSError as exc:
        raise FileError(f"cannot write '{file}': {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
