"""A small client for the NCI Genomic Data Commons (GDC) API: queries, manifests, downloads, STAR counts.

What it covers (https://docs.gdc.cancer.gov/API/Users_Guide/):

* search: ``POST /files`` and ``POST /cases`` with a JSON ``filters`` object, paged with ``from``/``size``
  until ``data.pagination.total`` hits were read; nested hits are flattened to one table row per hit;
* ``GET /status`` for the data release a query was resolved against;
* GDC manifests (tab-separated ``id filename md5 size state``, as the portal and ``/manifest`` write them);
* downloads with ``GET /data/{file_id}`` through the data layer's one engine (:mod:`gbhet_lib.data.download`):
  bounded concurrency, ``<name>.part`` files resumed with an HTTP ``Range`` request, retries with exponential
  back-off, md5 verification, and the gdc-client folder layout ``<out_dir>/<file_id>/<filename>`` (so a folder
  filled by gdc-client is recognised);
* ``read_star_counts``: GDC "STAR - Counts" gene-expression files (``*.augmented_star_gene_counts.tsv``) into
  one AnnData (samples × genes, raw unstranded counts).

An access token (controlled data only; the study uses open data) is sent as the ``X-Auth-Token`` header. It is
never logged, never put in an exception message or a repr, and never forwarded to another host on a redirect.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import requests
from requests.sessions import Session
from tqdm import tqdm

from gbhet_lib.errors import GbhetError
from gbhet_lib.io import atomic_path, read_json, write_json_atomic, write_table_atomic

from .download import (Checksum, DigestMismatchError, HttpStatusError, RetriesExhaustedError, RetryPolicy,
                       SizeMismatchError, TransferStats, download, file_digest, partial_path, send_with_retries,
                       unsafe_name)

if TYPE_CHECKING:
    import anndata

log = logging.getLogger(__name__)

GDC_API = "https://api.gdc.cancer.gov"
DEFAULT_PROJECTS: tuple[str, ...] = ("TCGA-GBM", "TCGA-LGG")
ENV_TOKEN = "GDC_TOKEN"            # the token itself
ENV_TOKEN_FILE = "GDC_TOKEN_FILE"  # a file holding the token (as downloaded from the GDC portal)

#: file fields every files query asks for: what a manifest needs plus what joins a file to its case/sample
FILE_FIELDS: tuple[str, ...] = (
    "file_id", "file_name", "md5sum", "file_size", "state", "data_format", "access",
    "cases.case_id", "cases.submitter_id", "cases.project.project_id",
    "cases.samples.sample_id", "cases.samples.submitter_id", "cases.samples.sample_type",
)
#: case fields for overall survival and the usual covariates (ages and times in days)
SURVIVAL_FIELDS: tuple[str, ...] = (
    "case_id", "submitter_id", "project.project_id",
    "demographic.gender", "demographic.vital_status", "demographic.days_to_death", "demographic.age_at_index",
    "diagnoses.age_at_diagnosis", "diagnoses.days_to_last_follow_up", "diagnoses.primary_diagnosis",
)
MANIFEST_COLUMNS: tuple[str, ...] = ("id", "filename", "md5", "size", "state")
#: GDC API names of the manifest columns (files endpoint fields)
_API_TO_MANIFEST = {"file_id": "id", "file_name": "filename", "md5sum": "md5", "file_size": "size"}
STAR_REQUIRED_COLUMNS: tuple[str, ...] = ("gene_id", "gene_name", "gene_type", "unstranded")

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_MD5 = re.compile(r"^[0-9a-f]{32}$", re.IGNORECASE)
_VERIFIED_MARKER = ".verified.json"
REPORT_NAME = "download_report.json"


class GDCError(GbhetError, RuntimeError):
    """A GDC request failed; the message names the request and the reason (never the token)."""


class GDCNotFoundError(GDCError):
    """The GDC answered 404 for a file id."""


class ChecksumError(GDCError):
    """A downloaded file's md5 differs from the manifest's."""


class DownloadError(GDCError):
    """Some files of a download failed; ``results`` holds the per-file outcome of every file."""

    def __init__(self, message: str, results: list[DownloadResult]) -> None:
        super().__init__(message)
        self.results = results


class ManifestError(GbhetError, ValueError):
    """A GDC manifest (file or table) is malformed; the message names the line or row and the fix."""


class StarCountsError(GbhetError, ValueError):
    """A file is not a GDC STAR - Counts file, or several files do not fit together."""


# --------------------------------------------------------------------------------------------------- queries

@dataclasses.dataclass(frozen=True)
class GDCQuery:
    """A named search: which endpoint, which filters, which fields. Stored as JSON in ``data_manifest/gdc``."""

    name: str
    endpoint: Literal["files", "cases"]
    filters: dict[str, Any]
    fields: tuple[str, ...]
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"name": self.name, "endpoint": self.endpoint, "description": self.description,
                "filters": self.filters, "fields": list(self.fields)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GDCQuery:
        """Inverse of :meth:`to_dict`, with an error naming missing keys or a wrong endpoint."""
        missing = sorted({"name", "endpoint", "filters", "fields"} - set(values))
        if missing:
            raise ValueError(f"GDC query lacks key(s) {missing}; write it with gbhet_lib.data.gdc.export_queries")
        if values["endpoint"] not in ("files", "cases"):
            raise ValueError(f"GDC query {values['name']!r}: endpoint {values['endpoint']!r} is not 'files' or 'cases'")
        return cls(name=str(values["name"]), endpoint=values["endpoint"], filters=dict(values["filters"]),
                   fields=tuple(values["fields"]), description=str(values.get("description", "")))


def load_query(path: str | os.PathLike[str]) -> GDCQuery:
    """Read a query JSON file written by :func:`export_queries`."""
    try:
        return GDCQuery.from_dict(read_json(path))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def in_filter(field: str, values: Iterable[str]) -> dict[str, Any]:
    """One GDC filter clause ``{"op": "in", "content": {"field": field, "value": [...]}}``."""
    return {"op": "in", "content": {"field": field, "value": list(values)}}


def and_filter(*clauses: dict[str, Any]) -> dict[str, Any]:
    """All clauses must hold (GDC ``and`` operator)."""
    return {"op": "and", "content": list(clauses)}


def project_filter(projects: str | Sequence[str] = DEFAULT_PROJECTS,
                   field: str = "cases.project.project_id") -> dict[str, Any]:
    """Files (or, with ``field="project.project_id"``, cases) of the given GDC projects, e.g. ``TCGA-GBM``."""
    names = _projects(projects)
    return in_filter(field, names)


def star_counts_query(projects: str | Sequence[str] = DEFAULT_PROJECTS) -> GDCQuery:
    """Open STAR - Counts gene-expression files (GENCODE v36, one per RNA-seq aliquot) of ``projects``."""
    names = _projects(projects)
    return GDCQuery(
        name=f"star_counts_{_slug(names)}", endpoint="files", fields=FILE_FIELDS,
        description=f"RNA-seq gene counts (STAR - Counts workflow, open access) of {', '.join(names)}; "
                    "every sample type (select e.g. 'Primary Tumor' with cases.samples.sample_type).",
        filters=and_filter(
            project_filter(names),
            in_filter("files.data_category", ["Transcriptome Profiling"]),
            in_filter("files.data_type", ["Gene Expression Quantification"]),
            in_filter("files.analysis.workflow_type", ["STAR - Counts"]),
            in_filter("files.access", ["open"]),
        ))


def diagnostic_slides_query(projects: str | Sequence[str] = DEFAULT_PROJECTS) -> GDCQuery:
    """Diagnostic (FFPE, H&E) whole-slide images in SVS format of ``projects``."""
    names = _projects(projects)
    return GDCQuery(
        name=f"diagnostic_slides_{_slug(names)}", endpoint="files", fields=FILE_FIELDS,
        description=f"Diagnostic whole-slide images (SVS) of {', '.join(names)}.",
        filters=and_filter(
            project_filter(names),
            in_filter("files.data_type", ["Slide Image"]),
            in_filter("files.experimental_strategy", ["Diagnostic Slide"]),
            in_filter("files.data_format", ["SVS"]),
        ))


def cases_survival_query(projects: str | Sequence[str] = DEFAULT_PROJECTS) -> GDCQuery:
    """Cases of ``projects`` with the clinical fields :func:`survival_table` needs."""
    names = _projects(projects)
    return GDCQuery(
        name=f"cases_survival_{_slug(names)}", endpoint="cases", fields=SURVIVAL_FIELDS,
        description=f"Cases of {', '.join(names)} with vital status, days to death / last follow-up, age, sex.",
        filters=and_filter(project_filter(names, field="project.project_id")))


def default_queries(projects: str | Sequence[str] = DEFAULT_PROJECTS) -> tuple[GDCQuery, ...]:
    """The study's three queries: STAR counts, diagnostic slides, case survival."""
    return star_counts_query(projects), diagnostic_slides_query(projects), cases_survival_query(projects)


def export_queries(folder: str | os.PathLike[str],
                   projects: str | Sequence[str] = DEFAULT_PROJECTS) -> list[Path]:
    """Write :func:`default_queries` as ``<folder>/<name>.json`` (stable bytes) and return the paths."""
    return [write_json_atomic(Path(folder) / f"{q.name}.json", q.to_dict()) for q in default_queries(projects)]


def _projects(projects: str | Sequence[str]) -> tuple[str, ...]:
    names = (projects,) if isinstance(projects, str) else tuple(projects)
    if not names or not all(isinstance(p, str) and p.strip() for p in names):
        raise ValueError(f"projects={projects!r}: give GDC project ids such as ('TCGA-GBM', 'TCGA-LGG')")
    return names


def _slug(projects: Sequence[str]) -> str:
    """``('TCGA-GBM', 'TCGA-LGG')`` → ``tcga_gbm_lgg``; projects of several programs are joined whole."""
    programs = {p.split("-", 1)[0] for p in projects}
    if len(programs) == 1 and all("-" in p for p in projects):
        parts = [programs.pop()] + [p.split("-", 1)[1] for p in projects]
    else:
        parts = list(projects)
    return re.sub(r"[^a-z0-9]+", "_", "_".join(parts).lower()).strip("_")


# --------------------------------------------------------------------------------------------------- client

class _Secret:
    """Holds the token; its repr and str never show it."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__


class _TokenSafeSession(Session):
    """A requests session that drops ``X-Auth-Token`` when a redirect leaves the original host.

    requests itself strips only ``Authorization`` on such redirects.
    """

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        if self.should_strip_auth(response.request.url, prepared_request.url):
            prepared_request.headers.pop("X-Auth-Token", None)


@dataclasses.dataclass
class DownloadResult:
    """Outcome for one manifest row: ``downloaded``, ``skipped`` (already verified) or ``failed``."""

    file_id: str
    filename: str
    status: Literal["downloaded", "skipped", "failed"]
    path: str | None = None
    bytes_transferred: int = 0
    attempts: int = 0
    error: str | None = None


class GDCClient:
    """Client of the GDC API (``base_url``), optionally authenticated with a token.

    Args:
        base_url: API root, ``https://api.gdc.cancer.gov`` by default (tests point it at a local server).
        token: the GDC access token itself. Without it the token is read from ``token_file``, else taken
            from ``$GDC_TOKEN``, else read from the file named by ``$GDC_TOKEN_FILE``; no token at all is
            fine for open-access data (all the study uses).
        token_file: a file holding the token (the ``gdc-user-token.*.txt`` the GDC portal gives).
        timeout: seconds to wait for a connection or for the next bytes of a response.
        max_retries: how many times a request is repeated after a connection error, a timeout, HTTP 429 or
            5xx, or a transfer cut short (then resumed with ``Range``).
        backoff_s: the first retry waits ``backoff_s`` seconds, each further one twice as long.
    """

    def __init__(self, base_url: str = GDC_API, token: str | None = None,
                 token_file: str | os.PathLike[str] | None = None, timeout: float = 60.0,
                 max_retries: int = 4, backoff_s: float = 2.0) -> None:
        if max_retries < 0 or backoff_s < 0 or timeout <= 0:
            raise ValueError(f"max_retries={max_retries}, backoff_s={backoff_s}, timeout={timeout}: "
                             "retries and back-off must be >= 0 and the timeout > 0 (seconds)")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._token = _resolve_token(token, token_file)
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"GDCClient(base_url={self.base_url!r}, token={'<redacted>' if self._token else None})"

    # -- plumbing
    def _session(self) -> Session:
        """One session per thread (requests sessions are not guaranteed thread-safe)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = _TokenSafeSession()
            session.headers["User-Agent"] = "gbhet_lib-gdc/0.1"
            if self._token:
                session.headers["X-Auth-Token"] = self._token.value
        return session

    def _redact(self, text: str) -> str:
        return text.replace(self._token.value, "<redacted>") if self._token else text

    @property
    def retry(self) -> RetryPolicy:
        """The client's retries as the download engine takes them (``max_retries`` + 1 attempts, back-off doubling
        from ``backoff_s``, ``timeout`` for connecting and for each read)."""
        return RetryPolicy(attempts=self.max_retries + 1, backoff_s=self.backoff_s,
                           max_backoff_s=self.backoff_s * 2 ** self.max_retries, connect_timeout_s=self.timeout,
                           read_timeout_s=self.timeout)

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a request, retrying connection errors, timeouts, HTTP 429 and 5xx with back-off.

        Returns the first response that is not retryable (the caller checks its status).
        """
        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            return send_with_retries(self._session(), method, url, self.retry, **kwargs)
        except RetriesExhaustedError as err:
            raise GDCError(f"{method} {url} failed {err.attempts} time(s), last with {self._redact(err.last)}. "
                           "The GDC may be down or overloaded: retry later.") from None

    def _fail(self, response: requests.Response, what: str) -> GDCError:
        """An error for a non-success response, with a short (redacted) excerpt of the body."""
        excerpt = next(response.iter_content(300), b"")  # reads 300 bytes at most, even of a streamed body
        return self._http_error(response.status_code, response.reason, excerpt.decode("utf-8", errors="replace"),
                                what)

    def _http_error(self, status: int, reason: str, excerpt: str, what: str) -> GDCError:
        """A :class:`GDCError` (:class:`GDCNotFoundError` for 404) for an HTTP error answer; the body excerpt is
        redacted."""
        body = self._redact(excerpt.strip())
        hint = {401: " Your token is missing, expired or invalid: download a new one from the GDC portal.",
                403: " Access denied: controlled data need a token for a dbGaP-authorised account."}
        cls = GDCNotFoundError if status == 404 else GDCError
        return cls(f"{what}: HTTP {status} {reason}.{hint.get(status, '')}" + (f" Server said: {body}" if body else ""))

    def _post_json(self, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self._send("POST", endpoint, json=payload)
        if response.status_code != 200:
            raise self._fail(response, f"POST {self.base_url}/{endpoint}")
        try:
            return response.json()
        except ValueError as err:
            raise GDCError(f"POST {self.base_url}/{endpoint}: the answer is not JSON "
                           f"({response.text[:120]!r}...)") from err

    # -- search
    def status(self) -> dict[str, Any]:
        """``GET /status``: API version and the current ``data_release`` string."""
        response = self._send("GET", "status")
        if response.status_code != 200:
            raise self._fail(response, f"GET {self.base_url}/status")
        return response.json()

    def _hits(self, endpoint: str, filters: Mapping[str, Any], fields: Sequence[str], sort: str,
              page_size: int) -> list[dict[str, Any]]:
        """All hits of a search, page by page (``from`` = number read so far) up to ``pagination.total``."""
        if page_size < 1:
            raise ValueError(f"page_size={page_size} must be >= 1")
        hits: list[dict[str, Any]] = []
        total: int | None = None
        while total is None or len(hits) < total:
            payload = {"filters": filters, "fields": ",".join(fields), "format": "JSON", "sort": sort,
                       "size": str(page_size), "from": str(len(hits))}
            data, pagination = _parse_page(self._post_json(endpoint, payload), endpoint)
            if total is not None and pagination["total"] != total:
                raise GDCError(f"{endpoint}: the result count changed while paging ({total} → "
                               f"{pagination['total']}): the GDC released new data meanwhile; run the query again.")
            total = int(pagination["total"])
            if not data["hits"] and len(hits) < total:
                raise GDCError(f"{endpoint}: empty page at from={len(hits)} although total={total}")
            hits.extend(data["hits"])
        log.info("GDC %s: %d hit(s)", endpoint, len(hits))
        return hits

    def query_files(self, filters: Mapping[str, Any], fields: Sequence[str] = FILE_FIELDS,
                    page_size: int = 1000) -> pd.DataFrame:
        """Files matching ``filters`` (``POST /files``), one row per file, columns = ``fields`` (dotted names).

        Nested values (e.g. ``cases.samples.sample_type``) are flattened by :func:`flatten_hit`.
        """
        hits = self._hits("files", filters, fields, "file_id:asc", page_size)
        return _table(hits, fields)

    def query_cases(self, filters: Mapping[str, Any], fields: Sequence[str] = SURVIVAL_FIELDS,
                    page_size: int = 1000) -> pd.DataFrame:
        """Cases matching ``filters`` (``POST /cases``), one row per case; ``case_id`` is always included."""
        fields = tuple(fields) if "case_id" in fields else ("case_id", *fields)
        table = _table(self._hits("cases", filters, fields, "case_id:asc", page_size), fields)
        duplicated = table["case_id"][table["case_id"].duplicated()]
        if len(duplicated):
            raise GDCError(f"cases: case_id(s) {sorted(duplicated)[:5]} returned twice; run the query again")
        return table

    def query(self, query: GDCQuery, page_size: int = 1000) -> pd.DataFrame:
        """Run a stored :class:`GDCQuery` on its endpoint."""
        run = self.query_files if query.endpoint == "files" else self.query_cases
        return run(query.filters, query.fields, page_size=page_size)

    def resolve(self, query: GDCQuery, out_dir: str | os.PathLike[str]) -> Path:
        """Resolve ``query`` now and write what it found into ``out_dir`` (the run's data folder).

        Files queries write ``<name>.manifest.txt`` (GDC manifest) and ``<name>.files.tsv`` (all fields);
        cases queries write ``<name>.cases.tsv``. Always ``<name>.resolved.json``: UTC date, GDC data release,
        API URL, number of rows (and bytes), and the query itself, because GDC contents change between
        releases. Returns the path of the JSON record.
        """
        out = Path(out_dir)
        release = self.status().get("data_release", "unknown")
        table = self.query(query)
        record: dict[str, Any] = {"query": query.to_dict(), "api": self.base_url, "data_release": release,
                                  "resolved_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                  "n_rows": len(table)}
        if query.endpoint == "files":
            manifest = manifest_frame(table)
            record["manifest"] = write_manifest(manifest, out / f"{query.name}.manifest.txt").name
            record["total_bytes"] = int(manifest["size"].sum())
            record["table"] = write_table_atomic(out / f"{query.name}.files.tsv", table, index=False).name
        else:
            record["table"] = write_table_atomic(out / f"{query.name}.cases.tsv", table, index=False).name
        return write_json_atomic(out / f"{query.name}.resolved.json", record)

    # -- downloads
    def download_files(self, manifest: pd.DataFrame, out_dir: str | os.PathLike[str], concurrency: int = 4,
                       progress: bool = True) -> list[Path]:
        """Download every manifest file to ``<out_dir>/<id>/<filename>`` and return the paths (manifest order).

        Each file streams into ``<filename>.part``; a cut transfer is resumed with ``Range`` (also across
        runs); the md5 is checked against the manifest before the file gets its final name; a verified file is
        skipped on the next run. At most ``concurrency`` files transfer at once. The manifest's names are
        used (never the server's), and a name that could leave ``out_dir`` is refused before anything is
        fetched. A per-file report is written to ``<out_dir>/download_report.json``; if any file failed,
        :class:`DownloadError` lists all failures after the other files finished.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency={concurrency!r} must be an integer >= 1 (parallel transfers)")
        entries = manifest_frame(manifest)
        root = Path(out_dir)
        root.mkdir(parents=True, exist_ok=True)
        root = root.resolve()
        with tqdm(total=int(entries["size"].sum()), unit="B", unit_scale=True, desc="GDC download",
                  disable=not progress) as bar, \
                concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
            futures = [pool.submit(self._download_one, row, root, bar) for row in entries.itertuples(index=False)]
            results = [f.result() for f in futures]
        report = write_json_atomic(root / REPORT_NAME, {
            "api": self.base_url, "finished_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "files": [dataclasses.asdict(r) for r in results]})
        failed = [r for r in results if r.status == "failed"]
        if failed:
            lines = "\n".join(f"  {r.file_id} ({r.filename}): {r.error}" for r in failed)
            raise DownloadError(f"{len(failed)} of {len(results)} GDC download(s) failed (per-file report: "
                                f"{report}); rerun to retry them, finished files are kept:\n{lines}", results)
        return [Path(r.path) for r in results if r.path]

    def _download_one(self, row: Any, root: Path, bar: Any) -> DownloadResult:
        result = DownloadResult(file_id=row.id, filename=row.filename, status="failed")
        dest = root / row.id / row.filename
        stats = TransferStats()
        try:
            if _is_verified(dest, row.md5, row.size):
                bar.update(row.size)
                result.status, result.path = "skipped", str(dest)
                return result
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._fetch(row, dest, bar, stats)
            result.status, result.path = "downloaded", str(dest)
        except (GDCError, OSError, requests.RequestException) as err:
            result.error = self._redact(str(err))
            log.error("GDC download %s (%s) failed: %s", row.id, row.filename, result.error)
        finally:
            result.attempts, result.bytes_transferred = stats.attempts, stats.bytes_transferred
        return result

    def _fetch(self, row: Any, dest: Path, bar: Any, stats: TransferStats) -> None:
        """Download ``GET /data/{id}`` to ``dest`` with the engine (``<dest>.part`` resumed, md5 verified), then
        mark it verified; the engine's errors become :class:`GDCError` subclasses naming the file."""
        part = partial_path(dest)
        if part.exists() and part.stat().st_size <= row.size:
            bar.update(part.stat().st_size)  # resumed from an earlier run
        url = f"{self.base_url}/data/{row.id}"
        try:
            download(url, dest, retry=self.retry, session=self._session(), expected_size=row.size,
                     checksum=Checksum("md5", row.md5), on_bytes=bar.update, stats=stats)
        except HttpStatusError as err:
            if err.status == 404:
                raise GDCNotFoundError(f"GDC file {row.id} ({row.filename}): not found (HTTP 404). Check the id; "
                                       "the file may have been replaced in a later data release (re-resolve "
                                       "the query).") from None
            raise self._http_error(err.status, err.reason, err.excerpt, f"GET {url}") from None
        except RetriesExhaustedError as err:
            raise GDCError(f"transfer of {row.id} failed {err.attempts} time(s) (last: {self._redact(err.last)}); "
                           f"rerun to resume from {part}") from None
        except SizeMismatchError as err:
            raise GDCError(f"GDC file {row.id}: server sent {err.got} bytes, the manifest says {row.size}; "
                           "re-resolve the query (the file changed)") from None
        except DigestMismatchError as err:
            raise ChecksumError(f"GDC file {row.id} ({row.filename}): md5 mismatch, expected {row.md5}, got "
                                f"{err.actual}; the download was deleted. Rerun; if it persists the manifest is "
                                "out of date (re-resolve the query).") from None
        _mark_verified(dest, row.md5)


def _resolve_token(token: str | None, token_file: str | os.PathLike[str] | None) -> _Secret | None:
    """The token from, in this order: ``token``, ``token_file``, ``$GDC_TOKEN``, ``$GDC_TOKEN_FILE``."""
    if token:
        return _Secret(token.strip())
    path = token_file or (None if os.environ.get(ENV_TOKEN) else os.environ.get(ENV_TOKEN_FILE)) or None
    if path is None:
        value = os.environ.get(ENV_TOKEN, "").strip()
        return _Secret(value) if value else None
    try:
        value = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"GDC token file {str(path)!r} cannot be read ({type(err).__name__}); pass token_file= "
                         f"the file the GDC portal gave you, or unset {ENV_TOKEN_FILE}") from None
    if not value:
        raise ValueError(f"GDC token file {str(path)!r} is empty")
    return _Secret(value)


def _parse_page(body: Any, endpoint: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data, pagination)`` of a search answer, with a clear error when the shape is not the GDC's."""
    data = body.get("data") if isinstance(body, dict) else None
    pagination = data.get("pagination") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("hits"), list) or not isinstance(pagination, dict) \
            or "total" not in pagination:
        keys = sorted(body) if isinstance(body, dict) else type(body).__name__
        raise GDCError(f"{endpoint}: unexpected answer (top-level keys {keys}); expected "
                       "{'data': {'hits': [...], 'pagination': {'total': ...}}, 'warnings': {...}}")
    if body.get("warnings"):
        log.warning("GDC %s warnings: %s", endpoint, body["warnings"])
    return data, pagination


def _mark_verified(path: Path, md5: str) -> None:
    stat = path.stat()
    write_json_atomic(path.parent / _VERIFIED_MARKER, {"filename": path.name, "md5": md5.lower(),
                                                       "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})


def _is_verified(path: Path, md5: str, size: int) -> bool:
    """True when ``path`` is a finished download with this md5 (checked once, then remembered in a marker).

    A file without a marker (e.g. left by gdc-client) is hashed once; a wrong one is deleted.
    """
    if not path.is_file() or path.stat().st_size != size:
        return False
    marker = path.parent / _VERIFIED_MARKER
    if marker.is_file():
        try:
            seen = read_json(marker)
        except ValueError:
            seen = {}
        stat = path.stat()
        if seen == {"filename": path.name, "md5": md5.lower(), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
            return True
    if file_digest(path, "md5") == md5.lower():
        _mark_verified(path, md5)
        return True
    log.warning("%s: md5 differs from the manifest; downloading it again", path)
    path.unlink()
    return False


# --------------------------------------------------------------------------------------------------- tables

def flatten_hit(hit: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """One table row from one (nested) GDC hit: ``{dotted field: value}``.

    A field reached through lists (a case's ``diagnoses``, a file's ``cases.samples``) can have several
    values. Equal values collapse to one; otherwise numbers named ``days_to_*`` take the maximum (the
    latest time recorded), other numbers the minimum (e.g. age at the first diagnosis), and text values
    are joined with ``;`` so that nothing is dropped silently. Absent fields are None.
    """
    row: dict[str, Any] = {}
    for field in fields:
        values = [json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
                  for v in _walk(hit, field.split(".")) if v is not None]
        row[field] = _reduce(field, values)
    return row


def _walk(node: Any, keys: list[str]) -> Iterable[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, keys)
    elif not keys:
        yield node
    elif isinstance(node, Mapping) and keys[0] in node:
        yield from _walk(node[keys[0]], keys[1:])


def _reduce(field: str, values: list[Any]) -> Any:
    unique = list(dict.fromkeys(values))
    if len(unique) <= 1:
        return unique[0] if unique else None
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in unique):
        return max(unique) if field.rsplit(".", 1)[-1].startswith("days_to_") else min(unique)
    return ";".join(str(v) for v in unique)


def _table(hits: list[dict[str, Any]], fields: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame([flatten_hit(h, fields) for h in hits], columns=list(fields))


def survival_table(cases: pd.DataFrame) -> pd.DataFrame:
    """Overall survival per case from a :meth:`GDCClient.query_cases` table (``SURVIVAL_FIELDS``).

    Returns a table indexed by case ``submitter_id`` (the TCGA patient barcode) with ``os_days`` (float,
    days from diagnosis) and ``os_event`` (1 = death observed, 0 = censored at the last follow-up), plus
    ``project_id`` when present. ``Dead`` uses ``days_to_death`` (demographic, else diagnoses); ``Alive``
    uses ``diagnoses.days_to_last_follow_up``. Cases whose status is not reported or whose time is
    missing or negative are left out, with a warning that counts and names them.
    """
    need = {"submitter_id", "demographic.vital_status", "diagnoses.days_to_last_follow_up"}
    missing = sorted(need - set(cases.columns))
    if "demographic.days_to_death" not in cases.columns and "diagnoses.days_to_death" not in cases.columns:
        missing.append("demographic.days_to_death")
    if missing:
        raise ValueError(f"survival_table: columns {missing} are missing; query the cases with "
                         "fields=gbhet_lib.data.gdc.SURVIVAL_FIELDS")
    death = _numeric(cases, "demographic.days_to_death").fillna(_numeric(cases, "diagnoses.days_to_death"))
    follow_up = _numeric(cases, "diagnoses.days_to_last_follow_up")
    status = cases["demographic.vital_status"].fillna("").astype(str).str.strip().str.lower()
    dead = (status == "dead").to_numpy()
    table = pd.DataFrame({
        "os_days": np.where(dead, death, follow_up).astype(float),
        "os_event": dead.astype(int),
    }, index=pd.Index(cases["submitter_id"].astype(str), name="submitter_id"))
    if "project.project_id" in cases.columns:
        table["project_id"] = cases["project.project_id"].to_numpy()
    usable = status.isin(["dead", "alive"]).to_numpy() & (table["os_days"] >= 0).to_numpy()
    if not usable.all():
        left_out = list(table.index[~usable])
        log.warning("survival_table: %d case(s) without a usable vital status or time left out: %s%s",
                    len(left_out), left_out[:10], " ..." if len(left_out) > 10 else "")
    return table[usable]


def _numeric(table: pd.DataFrame, column: str) -> pd.Series:
    if column not in table.columns:
        return pd.Series(np.nan, index=table.index)
    return pd.to_numeric(table[column], errors="coerce")


# --------------------------------------------------------------------------------------------------- manifests

def manifest_frame(files: pd.DataFrame) -> pd.DataFrame:
    """A validated manifest table (``MANIFEST_COLUMNS``) from a manifest or a files-query table.

    Accepts the GDC API column names too (``file_id``, ``file_name``, ``md5sum``, ``file_size``); a missing
    ``state`` becomes ``released``. Every problem (bad id, md5, size, unsafe file name, duplicate id) is
    reported at once, each naming its row.
    """
    table = files.rename(columns={k: v for k, v in _API_TO_MANIFEST.items() if v not in files.columns})
    missing = [c for c in MANIFEST_COLUMNS[:4] if c not in table.columns]
    if missing:
        raise ManifestError(f"manifest table lacks column(s) {missing}; it needs {list(MANIFEST_COLUMNS)} "
                            "(or the GDC fields file_id, file_name, md5sum, file_size)")
    if "state" not in table.columns:
        table = table.assign(state="released")
    table = table.loc[:, list(MANIFEST_COLUMNS)].reset_index(drop=True)
    problems = [f"row {i}: {p}" for i, rec in enumerate(table.itertuples(index=False))
                for p in _row_problems(rec.id, rec.filename, rec.md5, rec.size)]
    problems += [f"row {i}: id {v} appears more than once" for i, v in table["id"][table["id"].duplicated()].items()]
    if problems:
        raise ManifestError(_problem_message("manifest table", problems))
    return table.astype({"id": str, "filename": str, "md5": str, "state": str}).assign(
        size=pd.to_numeric(table["size"]).astype("int64"))


def write_manifest(files: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a GDC manifest (tab-separated ``id filename md5 size state``, ``\\n`` line ends) atomically."""
    table = manifest_frame(files)
    lines = ["\t".join(MANIFEST_COLUMNS)] + ["\t".join(str(v) for v in rec) for rec in table.itertuples(index=False)]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)


def read_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate a GDC manifest file; errors name the file and each bad line (1 = header)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"{p}: cannot read the manifest ({err})") from err
    if not lines or not lines[0].strip():
        raise ManifestError(f"{p}: empty; a GDC manifest starts with the header {' '.join(MANIFEST_COLUMNS)}")
    header = lines[0].rstrip("\r").split("\t")
    missing = [c for c in MANIFEST_COLUMNS[:4] if c not in header]
    if missing:
        raise ManifestError(f"{p} line 1: header {header} lacks {missing}; a GDC manifest is tab-separated "
                            f"with the columns {' '.join(MANIFEST_COLUMNS)}")
    rows, problems, seen = [], [], {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.rstrip("\r").split("\t")
        if len(cells) != len(header):
            problems.append(f"line {number}: {len(cells)} tab-separated field(s), the header has {len(header)}")
            continue
        rec = dict(zip(header, cells))
        problems += [f"line {number}: {msg}" for msg in _row_problems(rec["id"], rec["filename"], rec["md5"],
                                                                      rec["size"])]
        if rec["id"] in seen:
            problems.append(f"line {number}: id {rec['id']} already on line {seen[rec['id']]}")
        seen.setdefault(rec["id"], number)
        rows.append(rec)
    if problems:
        raise ManifestError(_problem_message(str(p), problems))
    if not rows:
        raise ManifestError(f"{p}: the manifest lists no files")
    return manifest_frame(pd.DataFrame(rows))


def _row_problems(file_id: Any, filename: Any, md5: Any, size: Any) -> list[str]:
    problems = []
    if not isinstance(file_id, str) or not _UUID.match(file_id):
        problems.append(f"id {file_id!r} is not a GDC file UUID")
    name_problem = unsafe_filename(filename)
    if name_problem:
        problems.append(f"file {file_id}: filename {filename!r} refused: {name_problem}")
    if not isinstance(md5, str) or not _MD5.match(md5):
        problems.append(f"file {file_id}: md5 {md5!r} is not 32 hexadecimal digits")
    try:
        bytes_ = float(size)
    except (TypeError, ValueError):
        bytes_ = -1.0
    if isinstance(size, bool) or not (bytes_ >= 0 and bytes_.is_integer()):
        problems.append(f"file {file_id}: size {size!r} is not a non-negative whole number of bytes")
    return problems


def unsafe_filename(name: Any) -> str | None:
    """Why ``name`` cannot be used as a plain file name inside the download folder, or None when it can.

    Refused (:func:`gbhet_lib.data.download.unsafe_name`): empty names, ``.`` and ``..``, any path separator
    (``/`` or ``\\``), absolute or drive paths, NUL and other control characters.
    """
    return unsafe_name(name)


def _problem_message(source: str, problems: list[str], limit: int = 20) -> str:
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(problems[:limit]) + more


# --------------------------------------------------------------------------------------------------- STAR counts

def read_star_counts(paths: Mapping[str, str | os.PathLike[str]] | Sequence[str | os.PathLike[str]]
                     ) -> anndata.AnnData:
    """GDC STAR - Counts files → ``anndata.AnnData`` (samples × genes) of raw unstranded counts.

    Args:
        paths: ``{sample_id: path}``, or paths whose sample id is the folder name when that is a file UUID
            (the download layout ``<file_id>/<filename>``), else the file name up to its first dot.

    Returns:
        AnnData with ``X`` = ``unstranded`` read counts (int64); ``obs`` indexed by sample id with the source
        file; ``var`` indexed by the versioned ``gene_id`` with ``gene_name`` and ``gene_type``;
        ``uns["gene_model"]`` from the ``# gene-model:`` comment line. The ``N_unmapped``,
        ``N_multimapping``, ``N_noFeature`` and ``N_ambiguous`` summary rows are dropped. Gene order
        follows the first file; all files must list the same genes.
    """
    import anndata

    items = _star_items(paths)
    first_id, first_path = items[0]
    first = _read_star_file(first_path)
    genes = first.index
    X = np.empty((len(items), len(genes)), dtype=np.int64)
    X[0] = first["unstranded"].to_numpy()
    for row, (_, path) in enumerate(items[1:], start=1):
        table = _read_star_file(path)
        if table.attrs["gene_model"] != first.attrs["gene_model"]:
            raise StarCountsError(f"{path}: gene model {table.attrs['gene_model']!r} differs from "
                                  f"{first.attrs['gene_model']!r} of {first_path}; use files of one GDC release")
        if not table.index.equals(genes):
            _check_same_genes(table.index, genes, path, first_path)
            table = table.loc[genes]
        X[row] = table["unstranded"].to_numpy()
    obs = pd.DataFrame({"source_file": [str(p) for _, p in items]},
                       index=pd.Index([sid for sid, _ in items], name="sample_id"))
    var = first[["gene_name", "gene_type"]].copy()
    adata = anndata.AnnData(X=X, obs=obs, var=var)
    adata.uns["gene_model"] = first.attrs["gene_model"]
    return adata


def _star_items(paths: Mapping[str, str | os.PathLike[str]] | Sequence[str | os.PathLike[str]]
                ) -> list[tuple[str, Path]]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if isinstance(paths, Mapping):
        items = [(str(k), Path(v)) for k, v in paths.items()]
    else:
        items = [(_sample_id(Path(p)), Path(p)) for p in paths]
    if not items:
        raise StarCountsError("read_star_counts: no files given")
    ids = pd.Index([sid for sid, _ in items])
    if ids.has_duplicates:
        raise StarCountsError(f"read_star_counts: sample id(s) {sorted(set(ids[ids.duplicated()]))} occur twice; "
                              "pass a {sample_id: path} mapping with unique keys")
    return items


def _sample_id(path: Path) -> str:
    return path.parent.name if _UUID.match(path.parent.name) else path.name.split(".", 1)[0]


def _read_star_file(path: Path) -> pd.DataFrame:
    """One STAR - Counts file: genes (versioned ids) × gene_name, gene_type, unstranded (int64)."""
    comments = _leading_comments(path)
    model = next((c.split(":", 1)[1].strip() for c in comments if c.lstrip("# ").startswith("gene-model:")), None)
    try:
        table = pd.read_csv(path, sep="\t", skiprows=len(comments), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise StarCountsError(f"{path}: not a tab-separated STAR - Counts file ({err})") from err
    missing = [c for c in STAR_REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise StarCountsError(
            f"{path}: not a GDC STAR - Counts file: the header lacks {missing} (found {list(table.columns[:9])}). "
            "Expected a '# gene-model: ...' line, then 'gene_id gene_name gene_type unstranded stranded_first "
            "...'; download the 'STAR - Counts' workflow files (*.augmented_star_gene_counts.tsv).")
    table = table[~table["gene_id"].str.startswith("N_")].set_index("gene_id")
    if table.empty:
        raise StarCountsError(f"{path}: no gene rows (only the header and N_* summary rows)")
    if table.index.has_duplicates:
        raise StarCountsError(f"{path}: gene_id(s) {sorted(set(table.index[table.index.duplicated()]))[:5]} "
                              "occur twice")
    counts = pd.to_numeric(table["unstranded"], errors="coerce")
    bad_genes = table.index[counts.isna() | (counts < 0) | (counts % 1 != 0)]
    if len(bad_genes):
        raise StarCountsError(f"{path}: 'unstranded' of gene(s) {list(bad_genes[:5])} is not a non-negative "
                              f"whole read count (e.g. {table.loc[bad_genes[0], 'unstranded']!r})")
    out = table[["gene_name", "gene_type"]].assign(unstranded=counts.astype(np.int64))
    out.attrs["gene_model"] = model
    return out


def _leading_comments(path: Path) -> list[str]:
    """The ``#`` lines at the top of a text file (the GDC writes ``# gene-model: GENCODE v36``)."""
    comments: list[str] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.startswith("#"):
                    break
                comments.append(line.rstrip("\r\n"))
    except (OSError, UnicodeDecodeError) as err:
        raise StarCountsError(f"{path}: cannot read it as a STAR - Counts text file ({type(err).__name__}: "
                              f"{err})") from err
    return comments


def _check_same_genes(genes: pd.Index, reference: pd.Index, path: Path, reference_path: Path) -> None:
    only_here, only_there = genes.difference(reference), reference.difference(genes)
    if len(only_here) or len(only_there):
        raise StarCountsError(
            f"{path}: its genes differ from {reference_path}'s: {len(only_here)} only here (e.g. "
            f"{list(only_here[:3])}), {len(only_there)} only there (e.g. {list(only_there[:3])}). "
            "Use files of one GDC data release / gene model.")
