"""Safe extraction of crafted archives, and the whole download against a local HTTP server."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import stat
import struct
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import REAL_IMAGES, real_csv_lines
from fetalbench.data import download
from fetalbench.data.download import download_dataset, safe_extract
from fetalbench.data.fetal_planes_db import CSV_NAME, load_catalog
from fetalbench.errors import FetalbenchError

ARCHIVE = "FETAL_PLANES_ZENODO.zip"


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as handle:
        for name, data in members.items():
            handle.writestr(zipfile.ZipInfo(name), data)
    return path


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as handle:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            handle.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def dataset_members(count: int = 3, top: str = "FETAL_PLANES_ZENODO/") -> dict[str, bytes]:
    """An archive's members: the CSV rows of ``count`` real images, their PNGs, an .xlsx."""
    header, lines = real_csv_lines()
    names = sorted(path.stem for path in REAL_IMAGES.glob("*.png"))[:count]
    rows = [line for line in lines if line.split(";")[0].strip() in names]
    members = {
        f"{top}{CSV_NAME}": ("\n".join([header, *rows]) + "\n").encode(),
        f"{top}FETAL_PLANES_DB_data.xlsx": b"not really a spreadsheet",
    }
    for name in names:
        members[f"{top}Images/{name}.png"] = (REAL_IMAGES / f"{name}.png").read_bytes()
    return members


def assert_refused(archive: Path, target: Path, member: str) -> None:
    with pytest.raises(FetalbenchError, match="refusing") as caught:
        safe_extract(archive, target)
    assert repr(member) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert list(target.iterdir()) == []  # the staging folder is gone, nothing was moved in


def test_zip_with_top_folder_unpacks_in_place(tmp_path: Path) -> None:
    members = dataset_members()
    archive = make_zip(tmp_path / "a.zip", members)
    target = tmp_path / "out"
    safe_extract(archive, target)
    assert [p.name for p in target.iterdir()] == ["FETAL_PLANES_ZENODO"]
    for name, data in members.items():
        assert (target / name).read_bytes() == data


def test_tar_gz_unpacks_in_place(tmp_path: Path) -> None:
    folder = tarfile.TarInfo("d")
    folder.type = tarfile.DIRTYPE
    archive = make_tar(tmp_path / "a.tar.gz", [(folder, b""), (tarfile.TarInfo("d/f.txt"), b"hi")])
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "f.txt").read_bytes() == b"hi"


@pytest.mark.parametrize("name", ["../evil.txt", "Images/../../evil.txt", "/tmp/evil.txt"])
def test_zip_member_escaping_the_target_is_refused(tmp_path: Path, name: str) -> None:
    archive = make_zip(tmp_path / "a.zip", {"ok.txt": b"ok", name: b"evil"})
    assert zipfile.ZipFile(archive).namelist()[1] == name
    target = tmp_path / "deep" / "out"
    assert_refused(archive, target, name)
    assert not (tmp_path / "deep" / "evil.txt").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil.txt"])
def test_tar_member_escaping_the_target_is_refused(tmp_path: Path, name: str) -> None:
    archive = make_tar(tmp_path / "a.tar", [(tarfile.TarInfo(name), b"evil")])
    with tarfile.open(archive) as handle:
        assert handle.getnames() == [name]
    assert_refused(archive, tmp_path / "out", name)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_tar_link_member_is_refused(tmp_path: Path, kind: bytes) -> None:
    link = tarfile.TarInfo("Images/link.png")
    link.type = kind
    link.linkname = "/etc/passwd"
    archive = make_tar(tmp_path / "a.tar", [(tarfile.TarInfo("ok.txt"), b"ok"), (link, b"")])
    assert_refused(archive, tmp_path / "out", "Images/link.png")


def test_zip_symlink_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        link = zipfile.ZipInfo("Images/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        handle.writestr(link, "/etc/passwd")
    assert_refused(archive, tmp_path / "out", "Images/link.png")


def test_zip_member_declaring_over_1_gib_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"ok.txt": b"ok", "big.png": b"x" * 100})
    data = bytearray(archive.read_bytes())
    # Patch the uncompressed size of big.png in its central directory record to 2 GiB.
    record = data.rindex(b"PK\x01\x02")
    assert data[record + 46 : record + 46 + 7] == b"big.png"
    struct.pack_into("<I", data, record + 24, 2 << 30)
    archive.write_bytes(bytes(data))
    assert zipfile.ZipFile(archive).getinfo("big.png").file_size == 2 << 30
    assert_refused(archive, tmp_path / "out", "big.png")


def test_tar_member_declaring_over_1_gib_is_refused(tmp_path: Path) -> None:
    big = tarfile.TarInfo("big.png")
    big.size = 2 << 30
    archive = tmp_path / "a.tar"
    archive.write_bytes(big.tobuf(format=tarfile.GNU_FORMAT))
    with archive.open("r+b") as stream:  # a sparse file: the 2 GiB of data take no disk
        stream.truncate(512 + big.size + 2 * 512)
    assert_refused(archive, tmp_path / "out", "big.png")


def test_total_over_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "MAX_TOTAL_BYTES", 150)
    archive = make_zip(tmp_path / "a.zip", {"a": b"x" * 100, "b": b"x" * 100})
    with pytest.raises(FetalbenchError, match="declare 200 bytes in all"):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_existing_file_is_not_overwritten(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"x.txt": b"new"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.txt").write_bytes(b"old")
    with pytest.raises(FetalbenchError, match="already exists"):
        safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "x.txt").read_bytes() == b"old"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.txt"]


class FakeZenodo:
    """A Zenodo record and its files served from 127.0.0.1 on a thread."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.requests: list[str] = []
        routes, requests = self.routes, self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                body = routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.api_url = f"{self.base}/api/records/3904280"

    def publish(self, archive: bytes, md5: str, shape: str) -> None:
        """Serve ``archive`` and a record listing it (and a README the download skips)."""
        content = f"/api/records/3904280/files/{ARCHIVE}/content"
        readme = {"key": "README.txt", "checksum": "md5:" + "0" * 32, "links": {"self": "/x"}}
        entry = {"key": ARCHIVE, "size": len(archive), "checksum": f"md5:{md5}"}
        files: object
        if shape == "records":  # GET /api/records/<id>: files[].links.self is the content link
            files = [readme, {**entry, "links": {"self": f"{self.base}{content}"}}]
        else:  # the files API shape: entries; links.self is metadata, links.content the bytes
            links = {"self": f"/api/records/3904280/files/{ARCHIVE}", "content": content}
            files = {"entries": [readme, {**entry, "links": links}]}
        self.routes["/api/records/3904280"] = json.dumps({"id": 3904280, "files": files}).encode()
        self.routes[content] = archive


@pytest.fixture
def zenodo() -> Iterator[FakeZenodo]:
    fake = FakeZenodo()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.mark.parametrize("shape", ["records", "files"])
@pytest.mark.parametrize("top", ["FETAL_PLANES_ZENODO/", ""])
def test_download_end_to_end(
    tmp_path: Path, zenodo: FakeZenodo, capsys: pytest.CaptureFixture[str], shape: str, top: str
) -> None:
    archive = make_zip(tmp_path / ARCHIVE, dataset_members(3, top)).read_bytes()
    zenodo.publish(archive, hashlib.md5(archive).hexdigest(), shape)
    root = tmp_path / "data"
    messages: list[str] = []

    assert download_dataset(root, log=messages.append, api_url=zenodo.api_url) == root

    assert len(load_catalog(root)) == 3
    assert sorted(p.name for p in root.iterdir()) == [
        CSV_NAME, "FETAL_PLANES_DB_data.xlsx", "Images"
    ]
    assert f"/api/records/3904280/files/{ARCHIVE}/content" in zenodo.requests
    assert any("md5" in message and "matches" in message for message in messages)
    assert messages[-1] == f"3 images ready in {root}"
    assert "100%" in capsys.readouterr().err  # the tqdm progress bar ran to the end

    messages.clear()
    zenodo.requests.clear()
    download_dataset(root, log=messages.append, api_url=zenodo.api_url)
    assert zenodo.requests == []  # an existing dataset is only checked
    assert messages[-1] == f"3 images ready in {root}"


def test_checksum_mismatch_is_refused(tmp_path: Path, zenodo: FakeZenodo) -> None:
    archive = make_zip(tmp_path / ARCHIVE, dataset_members(2)).read_bytes()
    zenodo.publish(archive, "0" * 32, "records")
    root = tmp_path / "data"
    with pytest.raises(FetalbenchError, match="md5") as caught:
        download_dataset(root, log=lambda _: None, api_url=zenodo.api_url)
    assert "\n" not in str(caught.value)
    assert list((root / ".download").iterdir()) == []  # the .part file is deleted
    assert sorted(p.name for p in root.iterdir()) == [".download"]  # nothing unpacked


def test_http_error_is_one_line(tmp_path: Path, zenodo: FakeZenodo) -> None:
    with pytest.raises(FetalbenchError, match="answered HTTP 404") as caught:
        download_dataset(tmp_path / "data", log=lambda _: None, api_url=zenodo.api_url)
    assert "\n" not in str(caught.value) and "by hand" in str(caught.value)


def test_offline_says_how_to_get_the_data_by_hand(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    root = tmp_path / "data"
    start = time.monotonic()
    with pytest.raises(FetalbenchError) as caught:
        download_dataset(root, log=lambda _: None, api_url=f"http://127.0.0.1:{port}/api/x")
    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("cannot reach 127.0.0.1 (")
    assert message.endswith(
        f"download https://zenodo.org/records/3904280 by hand and unzip it so that "
        f"{root / CSV_NAME} and {root / 'Images'}/ exist"
    )
