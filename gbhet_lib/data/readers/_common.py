"""What every reader shares: the error type, file checks, R-file loading and column checks.

Every error names the file, what is wrong (row, column, gene) and the fix, and is raised ``from None`` so a
notebook shows one clear line, not a traceback from deep inside rdata or pandas.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
import rdata

from ...errors import GbhetError
from ._rxdr import RFormatError, read_r_dataframe

# TCGA placeholders such as "[Not Available]", "[Not Applicable]", "[Unknown]", "[Discrepancy]"
TCGA_PLACEHOLDER = re.compile(r"^\[[^\]]+\]$")
_R_MAGIC = (b"RDX2\n", b"RDX3\n", b"X\n", b"RDA2\n", b"RDA3\n", b"A\n", b"B\n")


class ReaderError(GbhetError, ValueError):
    """A data file cannot be read as asked; the message names the file, the problem and the fix."""


def check_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, or a ReaderError when it is missing, a folder or empty. ``what`` describes it."""
    p = Path(path)
    if not p.exists():
        raise ReaderError(f"{p}: file not found. Expected {what}; check the path (or fetch it with "
                          "`gbhet fetch`).")
    if not p.is_file():
        raise ReaderError(f"{p}: is a folder, not a file. Expected {what}.")
    if p.stat().st_size == 0:
        raise ReaderError(f"{p}: the file is empty. Expected {what}; fetch it again (`gbhet fetch`).")
    return p


def _head(p: Path, n: int = 8) -> bytes:
    """The first ``n`` bytes of ``p`` after gzip/bzip2/xz decompression (b"" if the stream is corrupt)."""
    with p.open("rb") as fh:
        magic = fh.read(6)
    opener: Callable[..., Any] = open
    if magic[:2] == b"\x1f\x8b":
        opener = gzip.open
    elif magic[:3] == b"BZh":
        opener = bz2.open
    elif magic[:6] == b"\xfd7zXZ\x00":
        opener = lzma.open
    try:
        with opener(p, "rb") as fh:
            return fh.read(n)
    except (OSError, EOFError, lzma.LZMAError):
        return b""


def check_r_file(path: str | Path, what: str) -> Path:
    """Like :func:`check_file`, and the (decompressed) bytes must start like an R save/saveRDS file."""
    p = check_file(path, what)
    if not _head(p).startswith(_R_MAGIC):
        raise ReaderError(f"{p}: not an R data file (.rda/.RData/.rds). Expected {what}; pass that file, "
                          "not a text table or a download error page.")
    return p


def load_r(path: str | Path, what: str, constructors: Mapping[str, Callable[..., Any]] | None = None) -> Any:
    """Parse an R file with rdata: a dict of objects for .rda/.RData, the object itself for .rds."""
    p = check_r_file(path, what)
    classes = {**rdata.conversion.DEFAULT_CLASS_MAP, **(constructors or {})}
    is_rds = not _head(p).startswith((b"RDX", b"RDA"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "missing constructor" for classes we unpack ourselves
            if is_rds:
                return rdata.read_rds(p, constructor_dict=classes)
            return rdata.read_rda(p, constructor_dict=classes)
    except Exception as err:  # rdata raises many types on malformed input
        raise ReaderError(f"{p}: cannot be parsed as R data ({type(err).__name__}: {err}). Expected {what}; "
                          "the file may be truncated: fetch it again.") from None


def load_r_frame(path: str | Path, what: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The (first) data frame of an R file, only ``columns`` decoded (fast path, see ``_rxdr``)."""
    p = check_r_file(path, what)
    try:
        return read_r_dataframe(p, columns)
    except KeyError as err:
        raise ReaderError(f"{p}: the R data frame has no column(s) {err.args[0]}. Expected {what}.") from None
    except (RFormatError, IndexError, ValueError) as err:
        raise ReaderError(f"{p}: cannot be read as an R data frame ({err}). Expected {what}.") from None


def pick_object(objects: Mapping[str, Any], path: Path, what: str, name: str | None = None) -> Any:
    """The object ``name`` (or the only one) of a parsed .rda."""
    if name is not None and name in objects:
        return objects[name]
    if name is None and len(objects) == 1:
        return next(iter(objects.values()))
    raise ReaderError(f"{path}: holds R object(s) {sorted(objects)}, not {name or 'exactly one'!r}. "
                      f"Expected {what}.")


def require_columns(table: pd.DataFrame, required: Iterable[str], path: Path | str, fix: str) -> None:
    """A ReaderError naming the missing columns, the columns present and ``fix``."""
    missing = [c for c in required if c not in table.columns]
    if missing:
        shown = ", ".join(map(str, list(table.columns)[:12])) + (" ..." if table.shape[1] > 12 else "")
        raise ReaderError(f"{path}: missing column(s) {', '.join(map(repr, missing))} (found: {shown}). {fix}")


def read_text_table(path: str | Path, what: str, **kwargs: Any) -> pd.DataFrame:
    """A CSV/TSV (optionally gzip) read with pandas; separator from the name (.csv → comma, else tab)."""
    p = check_file(path, what)
    if _head(p).startswith(_R_MAGIC):
        raise ReaderError(f"{p}: is an R data file, not a text table. Expected {what}; use the matching "
                          "read_*_rda reader for R files.")
    name = p.name.lower().removesuffix(".gz")
    sep = "," if name.endswith(".csv") else "\t"
    try:
        table = pd.read_csv(p, sep=sep, **kwargs)
    except UnicodeDecodeError:
        raise ReaderError(f"{p}: is not a UTF-8 text table (binary file?). Expected {what}.") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, EOFError, OSError) as err:
        raise ReaderError(f"{p}: cannot be parsed as a {'CSV' if sep == ',' else 'tab-separated'} table "
                          f"({err}). Expected {what}.") from None
    if table.empty:
        raise ReaderError(f"{p}: the table has a header but no rows. Expected {what}.")
    return table


def blank_to_na(values: pd.Series) -> pd.Series:
    """Strings stripped; empty strings and TCGA placeholders ("[Not Available]", ...) → missing."""
    s = values.astype("object").where(values.notna(), None)
    s = s.map(lambda v: v.strip() if isinstance(v, str) else v)
    return s.mask(s.map(lambda v: isinstance(v, str) and (v == "" or bool(TCGA_PLACEHOLDER.match(v)))))


_BARCODE = re.compile(r"^TCGA[-.]([A-Z0-9]{2})[-.]([A-Z0-9]{4})(?:[-.].*)?$", re.IGNORECASE)


def patient_barcode(barcodes: Iterable[Any], path: Path | str, where: str) -> list[str]:
    """TCGA patient barcodes (TCGA-XX-XXXX) from patient/sample/aliquot barcodes written with '-' or '.'."""
    out = []
    for i, code in enumerate(barcodes):
        match = _BARCODE.match(str(code).strip())
        if match is None:
            raise ReaderError(f"{path}: {where} {i + 1} holds {code!r}, not a TCGA barcode (TCGA-XX-XXXX...). "
                              "Check that this is the right file.")
        out.append(f"TCGA-{match[1]}-{match[2]}".upper())
    return out
