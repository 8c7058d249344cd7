"""Fetch FETAL_PLANES_DB from Zenodo and unpack it safely.

The dataset is Burgos-Artizzu et al., "Evaluation of deep convolutional neural networks for
automatic classification of common maternal fetal ultrasound planes", Scientific Reports 10, 10200
(2020), doi:10.1038/s41598-020-67076-5, published as Zenodo record 3904280 under CC BY 4.0.

:func:`download_dataset` lists the record's files through the Zenodo REST API, streams each archive
into ``ROOT/.download/<name>.part``, checks the md5 the record lists, renames the file into place
and unpacks it with :func:`safe_extract`, which refuses members that would land outside the target
folder, links and absurd sizes. Only the standard library talks HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.error import HTTPError
from urllib.parse import urljoin, urlparse
from urllib.request import Request, urlopen

from tqdm import tqdm

from fetalbench.data.fetal_planes_db import CSV_NAME, IMAGES_DIR, load_catalog
from fetalbench.errors import FetalbenchError

API_URL = "https://zenodo.org/api/records/3904280"
RECORD_PAGE = "https://zenodo.org/records/3904280"
TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 20
MAX_MEMBER_BYTES = 1 << 30
MAX_TOTAL_BYTES = 10 << 30
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
DOWNLOAD_DIR = ".download"


@dataclass(frozen=True)
class RemoteFile:
    """One archive of the Zenodo record: its file name, download URL, size and md5."""

    name: str
    url: str
    size: int | None
    md5: str


@dataclass(frozen=True)
class _Member:
    """One archive entry, read from its header: where it goes, what it is, how big it says it is."""

    name: str
    is_dir: bool
    size: int
    entry: zipfile.ZipInfo | tarfile.TarInfo


def download_dataset(
    root: Path, log: Callable[[str], None] = print, api_url: str = API_URL
) -> Path:
    """Download FETAL_PLANES_DB into ``root`` and return ``root`` once it loads.

    ``root`` ends up holding ``FETAL_PLANES_DB_data.csv`` and ``Images/``. A root that already
    holds both is only validated. ``api_url`` is the Zenodo record's API address (tests point it
    at a local server). Raises :class:`FetalbenchError` when Zenodo cannot be reached (saying how
    to get the data by hand), on a checksum mismatch, on an unsafe archive and on a layout that
    :func:`~fetalbench.data.fetal_planes_db.load_catalog` rejects.
    """
    root = Path(root)
    if (root / CSV_NAME).is_file() and (root / IMAGES_DIR).is_dir():
        log(f"{root} already holds {CSV_NAME} and {IMAGES_DIR}/; checking it")
        catalog = load_catalog(root)
        log(f"{len(catalog)} images ready in {root}")
        return root
    root.mkdir(parents=True, exist_ok=True)
    log(f"listing the files of {api_url}")
    archives = list_archives(_fetch_json(api_url, root), api_url)
    downloads = root / DOWNLOAD_DIR
    for remote in archives:
        archive = _download(remote, downloads, root, log)
        log(f"unpacking {archive.name} into {root}")
        safe_extract(archive, root)
        archive.unlink()
    if not any(downloads.iterdir()):
        downloads.rmdir()
    _hoist_single_folder(root)
    catalog = load_catalog(root)
    log(f"{len(catalog)} images ready in {root}")
    return root


def list_archives(record: object, api_url: str = API_URL) -> list[RemoteFile]:
    """The archives a Zenodo record lists, with their download URLs and md5 checksums.

    Accepts both API shapes: ``files`` as a list or as ``{"entries": [...]}``; the URL is
    ``links.content`` when present, else ``links.self`` (which is the content link in the records
    API), resolved against ``api_url``.
    """
    files = record.get("files") if isinstance(record, dict) else None
    if isinstance(files, dict):
        files = files.get("entries")
    if not isinstance(files, list):
        raise FetalbenchError(
            f"{api_url} did not answer with a Zenodo record listing files; download "
            f"{RECORD_PAGE} by hand"
        )
    archives = []
    for entry in files:
        if not isinstance(entry, dict):
            continue
        name = PurePosixPath(str(entry.get("key") or entry.get("filename") or "")).name
        if not name.lower().endswith(ARCHIVE_SUFFIXES) or name.startswith("."):
            continue
        links = entry.get("links") if isinstance(entry.get("links"), dict) else {}
        url = links.get("content") or links.get("self")
        checksum = str(entry.get("checksum") or "")
        algorithm, _, digest = checksum.rpartition(":")
        if not url or algorithm not in ("", "md5") or len(digest) != 32:
            raise FetalbenchError(
                f"{api_url} lists {name} without a download link and md5 checksum; download "
                f"{RECORD_PAGE} by hand"
            )
        size = entry.get("size", entry.get("filesize"))
        archives.append(
            RemoteFile(name, urljoin(api_url, url), int(size) if size else None, digest.lower())
        )
    if not archives:
        raise FetalbenchError(
            f"{api_url} lists no .zip or .tar archive; download {RECORD_PAGE} by hand"
        )
    return archives


def safe_extract(archive: Path, target: Path) -> None:
    """Unpack a zip, tar or tar.gz ``archive`` into ``target``, refusing anything unsafe.

    Every member header is checked before a byte is written: a member whose path resolves outside
    ``target`` (``../``, absolute paths), a symbolic or hard link, a device or other special file,
    a member declaring more than 1 GiB or an archive declaring more than 10 GiB in all raises a
    :class:`FetalbenchError` naming the member. Readers stop at the declared size, so the checks
    also bound what decompression writes. Files land in a temporary folder under ``target`` and
    are moved into place at the end; on any error that folder is removed and ``target`` is left
    as it was.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
    try:
        with _open_members(archive) as (members, open_member):
            _check_members(archive, members, staging)
            for member in members:
                _write_member(archive, member, open_member, staging)
        _move_children(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _open_members(
    archive: Path,
) -> Iterator[tuple[list[_Member], Callable[[_Member], BinaryIO]]]:
    """The members of a zip or tar archive and a function that opens one for reading."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as handle:
                members = [_zip_member(archive, info) for info in handle.infolist()]
                yield members, lambda member: handle.open(member.entry)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as handle:
                members = [_tar_member(archive, info) for info in handle.getmembers()]
                yield members, lambda member: handle.extractfile(member.entry)
        else:
            raise FetalbenchError(
                f"{archive} is neither a zip nor a tar archive; delete it and download again"
            )
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as error:
        raise FetalbenchError(
            f"{archive} is damaged ({_one_line(error)}); delete it and download again"
        ) from None


def _zip_member(archive: Path, info: zipfile.ZipInfo) -> _Member:
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip records no Unix file type
    if kind == stat.S_IFLNK:
        raise _refuse(archive, info.filename, "is a symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _refuse(archive, info.filename, "is not a regular file or folder")
    return _Member(info.filename, info.is_dir(), info.file_size, info)


def _tar_member(archive: Path, info: tarfile.TarInfo) -> _Member:
    if info.issym() or info.islnk():
        raise _refuse(archive, info.name, f"is a link (to {info.linkname!r})")
    if not (info.isfile() or info.isdir()):
        raise _refuse(archive, info.name, "is not a regular file or folder")
    return _Member(info.name, info.isdir(), info.size, info)


def _check_members(archive: Path, members: list[_Member], staging: Path) -> None:
    base = staging.resolve()
    total = 0
    for member in members:
        if PurePosixPath(member.name.replace("\\", "/")).is_absolute():
            raise _refuse(archive, member.name, "is an absolute path")
        destination = (base / member.name.replace("\\", "/")).resolve()
        if not destination.is_relative_to(base) or (destination == base and not member.is_dir):
            raise _refuse(archive, member.name, f"would land outside {staging.parent}")
        if member.size > MAX_MEMBER_BYTES:
            raise _refuse(
                archive, member.name, f"declares {member.size} bytes (limit {MAX_MEMBER_BYTES})"
            )
        total += member.size
    if total > MAX_TOTAL_BYTES:
        raise FetalbenchError(
            f"refusing {archive}: its members declare {total} bytes in all (limit "
            f"{MAX_TOTAL_BYTES}); delete it and download the official archive again"
        )


def _write_member(
    archive: Path,
    member: _Member,
    open_member: Callable[[_Member], BinaryIO],
    staging: Path,
) -> None:
    destination = staging / member.name.replace("\\", "/")
    try:
        if member.is_dir:
            destination.mkdir(parents=True, exist_ok=True)
            return
        destination.parent.mkdir(parents=True, exist_ok=True)
        with open_member(member) as source, destination.open("wb") as sink:
            shutil.copyfileobj(source, sink, CHUNK_BYTES)
    except OSError as error:
        raise FetalbenchError(
            f"cannot unpack {member.name!r} of {archive} into {staging.parent} "
            f"({_one_line(error)}); free disk space or fix the folder and retry"
        ) from None


def _move_children(source: Path, target: Path) -> None:
    """Move everything in ``source`` into ``target``, refusing to overwrite anything."""
    children = sorted(source.iterdir())
    clashes = [child.name for child in children if (target / child.name).exists()]
    if clashes:
        raise FetalbenchError(
            f"{target / clashes[0]} already exists; move it away (or unpack into an empty "
            "folder) and retry"
        )
    for child in children:
        os.replace(child, target / child.name)


def _hoist_single_folder(root: Path) -> None:
    """Make ``root`` hold the CSV and ``Images/`` when the archive wrapped them in one folder."""
    if (root / CSV_NAME).is_file() and (root / IMAGES_DIR).is_dir():
        return
    holders = [
        folder
        for folder in root.iterdir()
        if folder.is_dir() and not folder.name.startswith(".") and (folder / CSV_NAME).is_file()
    ]
    if len(holders) != 1:
        raise FetalbenchError(
            f"the archive did not unpack to {CSV_NAME} and {IMAGES_DIR}/ (nor to one folder "
            f"holding them) under {root}; download {RECORD_PAGE} by hand and arrange {root} so"
        )
    staging = root / f".hoist-{holders[0].name}"
    os.replace(holders[0], staging)
    _move_children(staging, root)
    staging.rmdir()


def _download(
    remote: RemoteFile, downloads: Path, root: Path, log: Callable[[str], None]
) -> Path:
    """Stream ``remote`` into ``downloads``, check its md5 and return the finished file."""
    downloads.mkdir(parents=True, exist_ok=True)
    final = downloads / remote.name
    if final.is_file() and _md5_of(final) == remote.md5:
        log(f"reusing {final} (md5 matches)")
        return final
    part = downloads / f"{remote.name}.part"
    log(f"downloading {remote.url} to {part}")
    digest = hashlib.md5()
    try:
        with (
            _open_url(remote.url, root) as response,
            part.open("wb") as sink,
            tqdm(total=remote.size, unit="B", unit_scale=True, desc=remote.name) as bar,
        ):
            while chunk := _read(response, remote.url, root):
                sink.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != remote.md5:
        part.unlink()
        raise FetalbenchError(
            f"{remote.name} from {remote.url} has md5 {digest.hexdigest()}, not the "
            f"{remote.md5} the record lists (a damaged download); run the download again"
        )
    log(f"md5 of {remote.name} matches the record")
    os.replace(part, final)
    return final


def _md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_json(url: str, root: Path) -> object:
    with _open_url(url, root) as response:
        body = b"".join(iter(lambda: _read(response, url, root), b""))
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FetalbenchError(
            f"{url} did not answer with JSON; download {RECORD_PAGE} by hand"
        ) from None


@contextmanager
def _open_url(url: str, root: Path) -> Iterator[BinaryIO]:
    request = Request(url, headers={"User-Agent": "fetalbench", "Accept": "*/*"})
    try:
        response = urlopen(request, timeout=TIMEOUT_S)
    except HTTPError as error:
        raise FetalbenchError(
            f"{urlparse(url).hostname or url} answered HTTP {error.code} for {url}: "
            f"{_by_hand(root)}"
        ) from None
    except (OSError, HTTPException, ValueError) as error:
        raise _unreachable(url, error, root) from None
    with response:
        yield response


def _read(response: BinaryIO, url: str, root: Path) -> bytes:
    try:
        return response.read(CHUNK_BYTES)
    except (OSError, HTTPException) as error:
        raise _unreachable(url, error, root) from None


def _unreachable(url: str, error: BaseException, root: Path) -> FetalbenchError:
    reason = getattr(error, "reason", None) or error
    return FetalbenchError(
        f"cannot reach {urlparse(url).hostname or url} ({_one_line(reason)}): {_by_hand(root)}"
    )


def _by_hand(root: Path) -> str:
    return (
        f"download {RECORD_PAGE} by hand and unzip it so that {root / CSV_NAME} and "
        f"{root / IMAGES_DIR}/ exist"
    )


def _refuse(archive: Path, name: str, problem: str) -> FetalbenchError:
    return FetalbenchError(
        f"refusing {archive}: member {name!r} {problem}; delete it and download the official "
        "archive again"
    )


def _one_line(value: object) -> str:
    return " ".join(str(value).split()) or type(value).__name__
