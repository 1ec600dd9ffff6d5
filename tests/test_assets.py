"""Assets discovery, the check table, and resumable verified downloads (local server)."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import zipfile
from pathlib import Path

import pytest

from emoca.assets.download import DownloadError, download_file, fetch_archive, safe_extract
from emoca.assets.locate import Assets, MissingAssetError, default_assets_dir
from emoca.cli.main import main


def test_explicit_path_beats_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EMOCA_HOME", str(tmp_path / "env"))
    assert default_assets_dir() == tmp_path / "env"
    assert Assets().root == tmp_path / "env"
    assert Assets(tmp_path / "explicit").root == tmp_path / "explicit"
    monkeypatch.delenv("EMOCA_HOME")
    assert default_assets_dir() == Path("~/.cache/emoca").expanduser()


def test_lookalike_folder_has_everything_required(fake_assets, capsys):
    assets = Assets(fake_assets)
    assert assets.missing_required() == []
    assert assets.path("flame_model").name == "generic_model.pkl"
    assert main(["assets", "check", str(fake_assets)]) == 0
    out = capsys.readouterr().out
    assert "all required files found" in out and "generic_model.pkl" in out


def test_missing_file_explains_where_to_get_it(tmp_path, capsys):
    with pytest.raises(MissingAssetError) as e:
        Assets(tmp_path).path("flame_model")
    msg = str(e.value)
    assert "flame.is.tue.mpg.de" in msg and "generic_model.pkl" in msg
    assert main(["assets", "check", str(tmp_path)]) == 1
    assert "MISSING" in capsys.readouterr().out


def test_override_path_wins(fake_assets, tmp_path):
    other = tmp_path / "my_flame.pkl"
    other.write_bytes((fake_assets / "FLAME/geometry/generic_model.pkl").read_bytes())
    assert Assets(fake_assets, overrides={"flame_model": other}).path("flame_model") == other


class _Server:
    """A 127.0.0.1 file server with Range support that can cut the first response short."""

    def __init__(self, root: Path, cut_after: int | None = None) -> None:
        self.root, self.cut_after, self.requests = root, cut_after, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output quiet
                pass

            def _serve(self):
                path = server.root / self.path.lstrip("/")
                server.requests.append((self.command, self.path, self.headers.get("Range")))
                if not path.exists():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.cut_after is not None and len(server.requests) == 1:
                    self.wfile.write(body[: server.cut_after])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # cut the connection mid-body
                    return
                self.wfile.write(body)

            do_GET = _serve
            do_POST = _serve

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_resumes_after_cut_connection(tmp_path):
    payload = os.urandom(300_000)
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv/file.bin").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    with _Server(tmp_path / "srv", cut_after=100_000) as srv:
        out = download_file(f"{srv.url}/file.bin", tmp_path / "dl/file.bin", sha256=digest,
                            auth=("me@example.org", "pw"))
    assert out.read_bytes() == payload
    assert srv.requests[0][2] is None and srv.requests[1][2] == "bytes=100000-"
    assert not (tmp_path / "dl/file.bin.part").exists()


def test_wrong_checksum_leaves_nothing_in_place(tmp_path):
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv/file.bin").write_bytes(b"x" * 5000)
    with _Server(tmp_path / "srv") as srv, pytest.raises(DownloadError, match="sha256"):
        download_file(f"{srv.url}/file.bin", tmp_path / "dl/file.bin", sha256="0" * 64)
    assert not (tmp_path / "dl/file.bin").exists()
    assert not (tmp_path / "dl/file.bin.part").exists()


def test_fetch_archive_unpacks_lookalike_flame(fake_assets, tmp_path):
    (tmp_path / "srv").mkdir()
    with zipfile.ZipFile(tmp_path / "srv/FLAME.zip", "w") as zf:
        for p in (fake_assets / "FLAME").rglob("*"):
            if p.is_file() and p.suffix != ".npz":
                zf.write(p, p.relative_to(fake_assets))
    with _Server(tmp_path / "srv") as srv:
        fetch_archive("flame", tmp_path / "assets", base_url=srv.url)
    assert Assets(tmp_path / "assets").missing_required() == []
    assert not (tmp_path / "assets/.downloads/flame.zip").exists()


def test_zip_with_path_traversal_is_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(DownloadError, match="outside"):
        safe_extract(bad, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
