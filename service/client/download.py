"""Download a disk or disk snapshot export to a file: resumable, sparse, verified.

The bytes go to ``<output>.part`` (see ``partfile``), zero blocks left as holes (see
``sparse``), hashed as they arrive. A dropped connection or a busy gateway (429/503)
is retried from where the stream stopped, with ``Range`` and ``If-Range`` so a changed
content is never mixed in. At the end the local SHA-256 is compared with the gateway's
digest of the whole image (its ``Repr-Digest`` header, else the export operation's
``transfer.sha256``), and only a verified file is renamed to ``<output>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
from yarl import URL

from service.client.partfile import (
    PartLockedError,
    PartMeta,
    PartPaths,
    hash_prefix,
    load_meta,
    lock,
    plan_resume,
    remove_quietly,
    save_meta,
)
from service.client.sparse import SparseWriter
from service.client.wire import (
    is_strong_etag,
    parse_content_range,
    parse_repr_digest,
    parse_retry_after,
    parse_unsatisfied_range,
    range_header,
)

Kind = Literal["disk", "disk-snapshot"]
KINDS: dict[str, str] = {"disk": "disks", "disk-snapshot": "disk-snapshots"}
Phase = Literal["checking", "downloading"]

TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_WAIT = 60.0          # a Retry-After longer than this is not waited out in full
OPERATION_WAIT = 15.0          # how long the operation may take to show the final transfer
PROGRESS_INTERVAL = 0.1        # seconds between progress callbacks (a chunk can be 16 KiB)
CHUNK = 1 << 20


@dataclass(frozen=True)
class Progress:
    phase: Phase          # "checking": re-hashing an existing part file; "downloading"
    done: int             # bytes of the image done (the resumed prefix included)
    total: int | None     # the image's size when known


ProgressCallback = Callable[[Progress], None]
NoticeCallback = Callable[[str], None]


class DownloadError(Exception):
    """The download failed; ``str()`` is one line for a person, ``exit_code`` for the shell."""

    exit_code = 1


class ApiProblem(DownloadError):
    """An RFC 9457 problem (or any non-2xx answer) from the gateway."""

    def __init__(self, subject: str, status: int, code: str, detail: str, retry_after: float | None = None) -> None:
        self.status, self.code, self.detail, self.retry_after = status, code, detail, retry_after
        super().__init__(f"{subject}: {detail} ({status} {code})" if subject else f"{detail} ({status} {code})")


class ChecksumMismatch(DownloadError):
    exit_code = 3


class NotVerified(DownloadError):
    """The gateway gave no digest to check the file against (``verify=True``)."""


@dataclass(frozen=True)
class DownloadResult:
    output: Path
    size: int
    allocated_bytes: int        # disk space the file takes (holes take none)
    received: int               # bytes received by this run
    resumed_from: int           # where a part file left by an earlier run was continued (0: not)
    restarted: bool             # the content changed (or the part file was unusable): started over
    retries: int                # transient failures retried
    sha256: str | None          # of the file, computed locally (None with verify=False)
    verified: bool              # sha256 equals the gateway's digest of the whole image
    digest_source: str          # "Repr-Digest" or "operation" when verified
    operation_id: str
    seconds: float


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Again(Exception):
    """Not a failure: ask again from ``_Job.offset`` (after a 416 on a complete part file)."""


def export_url(server: str, namespace: str, kind: str, name: str) -> str:
    return (f"{server.rstrip('/')}/v1/namespaces/{quote(namespace, safe='')}/{KINDS[kind]}/"
            f"{quote(name, safe='')}:export")


def connect_failure_reason(exc: aiohttp.ClientConnectorError) -> str:
    """The OS's words for a failed connect ("Connection refused"), not aiohttp's
    "Connect call failed ('127.0.0.1', 9)", so dvpctl's commands all say it alike."""
    error = exc.os_error
    return os.strerror(error.errno) if error is not None and error.errno else str(exc)


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


async def _problem(response: aiohttp.ClientResponse, subject: str) -> ApiProblem:
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    text = ""
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, UnicodeDecodeError):
        text = (await response.content.read(64 << 10)).decode()
    doc: Any = None
    with contextlib.suppress(ValueError):
        doc = json.loads(text) if text else None
    if isinstance(doc, dict) and (doc.get("detail") or doc.get("title")):
        code = str(doc.get("code") or doc.get("reason") or response.reason or "")
        return ApiProblem(subject, response.status, code, _one_line(str(doc.get("detail") or doc.get("title"))),
                          retry_after)
    detail = _one_line(text) if text and "json" not in (response.content_type or "") else ""
    return ApiProblem(subject, response.status, response.reason or "error",
                      detail or f"the gateway answered HTTP {response.status}", retry_after)


class _Job:
    """One download: the part file, the hash and where the stream is."""

    def __init__(self, session: aiohttp.ClientSession, url: str, server: str, subject: str, paths: PartPaths,
                 *, ttl: str | None, resume: bool, verify: bool, retries: int,
                 progress: ProgressCallback | None, notice: NoticeCallback | None) -> None:
        self.session, self.url, self.server, self.subject, self.paths = session, url, server, subject, paths
        self.ttl, self.resume, self.verify, self.retries = ttl, resume, verify, retries
        self._progress, self._notice = progress, notice
        self.fd = -1
        self.offset = 0                    # next byte to ask for; the part file holds [0, offset)
        self.size: int | None = None       # the image's size, once an answer said it
        self.etag: str | None = None
        self.hasher: hashlib._Hash | None = None   # sha256 of [0, offset) when verifying
        self.expected: str | None = None   # the gateway's hex sha256 of the whole image
        self.digest_source = ""
        self.operation_id = ""
        self.contacted = False             # an HTTP answer came: later connection errors are transient
        self.received = 0
        self.resumed_from = 0
        self.restarted = False
        self.retried = 0
        self._last_report = 0.0
        self._warned_etag = False

    # -- the user's view -------------------------------------------------------------------
    def notice(self, message: str) -> None:
        if self._notice is not None:
            self._notice(message)

    def report(self, phase: Phase, done: int, total: int | None, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._progress is not None and (force or now - self._last_report >= PROGRESS_INTERVAL):
            self._last_report = now
            self._progress(Progress(phase, done, total))

    # -- the part file ---------------------------------------------------------------------
    def start_over(self) -> None:
        os.ftruncate(self.fd, 0)
        remove_quietly(self.paths.meta)
        self.offset, self.etag = 0, None
        self.hasher = hashlib.sha256() if self.verify else None

    def rehash(self, upto: int) -> None:
        """The hash of the part file's first ``upto`` bytes, so new bytes can be appended to it."""
        self.hasher = hashlib.sha256() if self.verify else None
        if self.hasher is not None and upto > 0:
            self.report("checking", 0, upto, force=True)
            hash_prefix(self.fd, upto, self.hasher, lambda done: self.report("checking", done, upto))
            self.report("checking", upto, upto, force=True)

    # -- one request -----------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        if self.offset == 0 or self.etag is None:
            return {}    # nothing to continue, or no validator to continue safely with: everything
        headers = {"Range": range_header(self.offset), "If-Range": self.etag}
        if self.verify:
            # A ranged stream's digest covers only its range unless the whole image's is asked for.
            headers["Want-Repr-Digest"] = "sha-256=1"
        return headers

    async def attempt(self) -> bool:
        """One GET; True when the part file holds the whole image. Raises _Transient to retry."""
        params = {"ttl": self.ttl} if self.ttl else {}
        headers = self._headers()
        # Shown before the answer: a ranged request with Want-Repr-Digest makes the gateway
        # read the skipped prefix first, which takes a while on a big image.
        self.report("downloading", self.offset, self.size, force=True)
        try:
            async with self.session.get(URL(self.url, encoded=True), headers=headers,
                                        params=params) as response:
                self.contacted = True
                if response.status == 416:
                    await self._unsatisfiable(response)
                if response.status not in (200, 206):
                    problem = await _problem(response, self.subject)
                    if response.status in TRANSIENT_STATUSES:
                        raise _Transient(str(problem), problem.retry_after)
                    raise problem
                expected_end = self._accept(response, ranged="Range" in headers)
                await self._receive(response)
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientConnectorSSLError) as exc:
            raise DownloadError(f"TLS to {self.server} failed: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            if not self.contacted:
                raise DownloadError(f"cannot connect to {self.server}: {connect_failure_reason(exc)}") from None
            raise _Transient(f"cannot connect to {self.server}") from None
        except aiohttp.ClientPayloadError:
            raise _Transient(f"the connection broke off at {self.offset} bytes") from None
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            if not self.contacted:
                raise DownloadError(f"cannot reach {self.server}: {exc or type(exc).__name__}") from None
            raise _Transient(f"the connection was lost at {self.offset} bytes") from None
        if expected_end is not None and self.offset < expected_end:
            raise _Transient(f"the stream ended early at {self.offset} of {expected_end} bytes")
        return self.size is None or self.offset >= self.size

    async def _unsatisfiable(self, response: aiohttp.ClientResponse) -> None:
        total = parse_unsatisfied_range(response.headers.get("Content-Range"))
        if self.offset > 0 and total is not None and 0 < total <= self.offset:
            # The part file already holds everything: ask for its last byte again, which
            # confirms the content and brings the whole image's digest.
            if self.offset > total:
                os.ftruncate(self.fd, total)
            self.size, self.offset = total, total - 1
            self.resumed_from = self.offset if self.resumed_from else 0
            self.rehash(self.offset)
            raise _Again
        raise await _problem(response, self.subject)

    def _accept(self, response: aiohttp.ClientResponse, *, ranged: bool) -> int | None:
        """Check the answer's headers against what was asked; returns where its body ends."""
        asked = self.offset
        if response.status == 206:
            content_range = parse_content_range(response.headers.get("Content-Range"))
            if content_range is None or content_range.first != asked:
                raise DownloadError(f"{self.subject}: the gateway answered Content-Range "
                                    f"{response.headers.get('Content-Range')!r} to Range: bytes={asked}-")
            self.size = content_range.size
            end: int | None = content_range.last + 1
        else:
            if ranged:
                # If-Range did not match: the content changed since the part file was written.
                self.notice(f"{self.subject} changed since {self.paths.part.name} was written: starting over")
                self.restarted = True
                self.resumed_from = 0
            self.start_over()
            self.size = end = response.content_length
        etag = response.headers.get("ETag")
        if is_strong_etag(etag) and etag is not None:
            if etag != self.etag:
                save_meta(self.paths.meta, PartMeta(etag, self.size))
            self.etag = etag
        else:
            if not self._warned_etag:
                self._warned_etag = True
                self.notice("the gateway sent no strong ETag: an interrupted download will start over")
            remove_quietly(self.paths.meta)
            self.etag = None
        digest = parse_repr_digest(response.headers.get("Repr-Digest"))
        if digest is not None:
            self.expected, self.digest_source = digest, "Repr-Digest"
        elif response.status == 200:
            self.expected = None
        self.operation_id = response.headers.get("X-Operation-Id", "") or self.operation_id
        return end

    async def _receive(self, response: aiohttp.ClientResponse) -> None:
        writer = SparseWriter(self.fd, self.offset)
        try:
            async for chunk in response.content.iter_chunked(CHUNK):
                if self.hasher is not None:
                    self.hasher.update(chunk)
                writer.write(chunk)
                self.received += len(chunk)
                self.report("downloading", writer.position, self.size)
        finally:
            # What arrived is kept (and hashed): a retry continues right after it.
            writer.flush()
            self.offset = writer.position
            self.report("downloading", self.offset, self.size, force=True)

    # -- after the body --------------------------------------------------------------------
    async def operation_digest(self) -> tuple[str | None, str]:
        """The operation's ``transfer.sha256`` (waiting briefly for it to be final), or why not."""
        if not self.operation_id:
            return None, "the gateway sent no X-Operation-Id"
        url = f"{self.server.rstrip('/')}/v1/operations/{quote(self.operation_id, safe='')}"
        deadline = time.monotonic() + OPERATION_WAIT
        delay = 0.05
        while True:
            try:
                async with self.session.get(URL(url, encoded=True)) as response:
                    if response.status != 200:
                        problem = await _problem(response, f"operation {self.operation_id}")
                        return None, f"reading {problem}"
                    operation = await response.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                return None, f"reading operation {self.operation_id} failed: {exc or type(exc).__name__}"
            transfer = operation.get("transfer") if isinstance(operation, dict) else None
            digest = str(transfer.get("sha256") or "") if isinstance(transfer, dict) else ""
            if digest or (isinstance(operation, dict) and operation.get("done")):
                return (digest.lower() or None), f"operation {self.operation_id} has no transfer.sha256"
            if time.monotonic() > deadline:
                return None, f"operation {self.operation_id} was not done after {OPERATION_WAIT:.0f}s"
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


async def download(*, server: str, token: str, namespace: str, kind: Kind, name: str, output: Path,
                   ca_file: Path | None = None, ttl: str | None = None,
                   progress: ProgressCallback | None = None, notice: NoticeCallback | None = None,
                   resume: bool = True, verify: bool = True, retries: int = 5) -> DownloadResult:
    """Download the export of ``kind`` ``namespace/name`` to ``output``.

    Raises DownloadError (ChecksumMismatch, NotVerified, ApiProblem) with a one-line
    message; the part file is kept for a later run to resume.
    """
    if kind not in KINDS:
        raise DownloadError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    subject = f"{kind} {namespace}/{name}"
    paths = PartPaths(output)
    context = _tls_context(output, ca_file)
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "dvp-gateway-download"}
    connector = aiohttp.TCPConnector(ssl=context)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers, connector=connector,
                                     auto_decompress=False) as session:
        job = _Job(session, export_url(server, namespace, kind, name), server, subject, paths, ttl=ttl,
                   resume=resume, verify=verify, retries=retries, progress=progress, notice=notice)
        try:
            job.fd = os.open(paths.part, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DownloadError(f"cannot write {paths.part}: {exc.strerror}") from None
        try:
            lock(job.fd)
        except PartLockedError:
            os.close(job.fd)
            raise DownloadError(f"another download is writing {paths.part}") from None
        try:
            return await _run(job, started)
        except OSError as exc:
            raise DownloadError(f"{paths.part}: {exc.strerror or exc}") from None
        finally:
            _drop_if_empty(job)
            os.close(job.fd)


def _tls_context(output: Path, ca_file: Path | None) -> ssl.SSLContext | bool:
    # Checked before any request: a wrong -o or --ca-file should not cost a transfer.
    if output.is_dir():
        raise DownloadError(f"{output} is a directory: give a file name with -o")
    if ca_file is None:
        return True   # the system's trust store
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise DownloadError(f"cannot load the CA file {ca_file}: {exc}") from None


def _drop_if_empty(job: _Job) -> None:
    # A failure before the first byte leaves nothing worth resuming: no litter either.
    with contextlib.suppress(OSError):
        if os.fstat(job.fd).st_size == 0 and job.paths.part.exists():
            remove_quietly(job.paths.part, job.paths.meta)


async def _run(job: _Job, started: float) -> DownloadResult:
    part_size = os.fstat(job.fd).st_size
    meta = load_meta(job.paths.meta)
    plan = plan_resume(part_size, meta, job.resume)
    if plan.note:
        job.notice(f"{job.paths.part.name}: {plan.note}")
    if plan.offset == 0:
        job.restarted = part_size > 0
        job.start_over()
    else:
        job.offset = job.resumed_from = plan.offset
        job.etag = plan.etag
        job.size = meta.size if meta is not None else None   # for the progress bar until the answer says
        job.rehash(plan.offset)
    failures = 0
    while True:
        before = job.offset
        try:
            if await job.attempt():
                break
            if job.offset > before:
                failures = 0
                continue
            raise _Transient("the gateway sent no bytes")
        except _Again:
            continue
        except _Transient as exc:
            failures = 0 if job.offset > before else failures
            failures += 1
            if failures > job.retries:
                raise DownloadError(f"{job.subject}: {exc}; gave up after {job.retries} retries "
                                    f"({job.paths.part} kept: run the same command again to resume)") from None
            wait = min(MAX_RETRY_WAIT, exc.retry_after if exc.retry_after is not None else 2.0 ** (failures - 1))
            job.notice(f"{exc}; retrying in {wait:.0f}s ({failures}/{job.retries})")
            job.retried += 1
            await asyncio.sleep(wait)
    return await _finish(job, started)


async def _finish(job: _Job, started: float) -> DownloadResult:
    size = job.offset if job.size is None else job.size
    os.ftruncate(job.fd, size)       # a zero tail is a hole: the size is set, not written
    os.fsync(job.fd)
    actual = job.hasher.hexdigest() if job.hasher is not None else None
    verified = False
    if job.verify:
        expected, why = job.expected, ""
        if expected is None:
            expected, why = await job.operation_digest()
            job.digest_source = "operation"
        if expected is None:
            raise NotVerified(f"{job.subject}: not verified: the gateway gave no SHA-256 of the image ({why}); "
                              f"the data is in {job.paths.part} (sha256 {actual}); run again with --no-verify "
                              "to accept it unverified")
        if expected != actual:
            raise ChecksumMismatch(f"{job.subject}: checksum mismatch: the file has sha256 {actual}, the gateway "
                                   f"says {expected}; {job.paths.part} kept (run with --no-resume to download "
                                   "it again)")
        verified = True
    job.paths.part.replace(job.paths.output)
    remove_quietly(job.paths.meta)
    return DownloadResult(
        output=job.paths.output, size=size, allocated_bytes=os.fstat(job.fd).st_blocks * 512,
        received=job.received, resumed_from=job.resumed_from, restarted=job.restarted, retries=job.retried,
        sha256=actual, verified=verified, digest_source=job.digest_source if verified else "",
        operation_id=job.operation_id, seconds=time.monotonic() - started)
