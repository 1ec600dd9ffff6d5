"""``emoca view``: the page and its data over a local HTTP server, or as static files.

One table of routes (:class:`Site`) answers both: the server calls :meth:`Site.get` per
request, ``--export`` calls it for every path the page can ask for and writes the
answers as files under the same relative paths, so the exported folder is the same
site (any static server shows it).

Routes: ``index.html`` and ``static/...`` (the page, three.js vendored; package data),
``data/index.json`` (:mod:`emoca.viewer.catalog`), ``data/<item>/<track>/...``
(:mod:`emoca.viewer.tracks`), ``out/<path>`` (files of the output folder) and
``media/<item>/input<ext>`` (the input photo or video).
"""

from __future__ import annotations

import json
import mimetypes
import shutil
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from emoca.errors import InputError
from emoca.viewer.catalog import Catalog, scan
from emoca.viewer.tracks import CHUNK, Mesher, Track, chunk_name

__all__ = ["Site", "serve", "export_site", "STATIC"]

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json",
          ".glb": "model/gltf-binary", ".obj": "text/plain", ".bin": "application/octet-stream",
          ".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime",
          ".mkv": "video/x-matroska", ".csv": "text/csv", ".css": "text/css",
          ".html": "text/html"}


class NotFound(Exception):
    """The path names nothing the site serves."""


def _content_type(name: str) -> str:
    ext = Path(name).suffix.lower()
    return _TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _inside(base: Path, rel: str) -> Path:
    """``base/rel`` when it stays inside ``base`` and is a regular file."""
    p = (base / rel).resolve()
    if not p.is_relative_to(base.resolve()) or not p.is_file():
        raise NotFound(rel)
    return p


class Site:
    """The routes of the viewer for one output folder (module doc)."""

    def __init__(self, out_dir: str | Path, assets: str | Path | None = None) -> None:
        self.catalog: Catalog = scan(out_dir)
        self.mesher = Mesher(assets)
        self._tracks: dict[tuple[str, str], Track] = {}
        self._lock = threading.Lock()

    def track(self, item: str, track: str) -> Track:
        key = (item, track)
        with self._lock:
            if key not in self._tracks:
                it = self.catalog.items.get(item)
                if it is None or track not in it.tracks:
                    raise NotFound(f"{item}/{track}")
                self._tracks[key] = Track.read(it.tracks[track])
            return self._tracks[key]

    def get(self, path: str) -> tuple[bytes | Path, str]:
        """(body or a file to send, content type) for a site path without leading '/'."""
        path = path.lstrip("/") or "index.html"
        if path == "index.html" or path.startswith("static/"):
            rel = "index.html" if path == "index.html" else path.removeprefix("static/")
            return _inside(STATIC, rel), _content_type(rel)
        if path == "data/index.json":
            return json.dumps(self.catalog.index()).encode(), _TYPES[".json"]
        if path.startswith("out/"):
            return _inside(self.catalog.root, path.removeprefix("out/")), _content_type(path)
        parts = path.split("/")
        if parts[0] == "media" and len(parts) == 3:
            it = self.catalog.items.get(parts[1])
            if it is None or it.media is None or not it.media.is_file() or \
                    parts[2] != "input" + it.media.suffix.lower():
                raise NotFound(path)
            return it.media, _content_type(parts[2])
        if parts[0] == "data" and len(parts) == 4:
            return self._track_stream(parts[1], parts[2], parts[3])
        raise NotFound(path)

    def _track_stream(self, item: str, track: str, name: str) -> tuple[bytes, str]:
        tr = self.track(item, track)
        if name == "meta.json":
            return json.dumps(tr.meta(self.mesher, item)).encode(), _TYPES[".json"]
        if name == "faces.bin":
            _, faces, why = tr.mesh_status(self.mesher)
            if faces is None:
                raise NotFound(f"{item}/{track}/faces.bin: {why}")
            return faces.tobytes(), _TYPES[".bin"]
        stem, _, ext = name.partition(".")
        kind, _, num = stem.partition("_")
        if not num.isdigit() or len(num) != 5:
            raise NotFound(name)
        chunk = int(num)
        if chunk >= (tr.n_frames + CHUNK - 1) // CHUNK:
            raise NotFound(name)
        if kind == "verts" and ext == "bin":
            return tr.vertices(self.mesher, chunk).tobytes(), _TYPES[".bin"]
        if kind == "frames" and ext == "json":
            return json.dumps(tr.frames(chunk)).encode(), _TYPES[".json"]
        raise NotFound(name)

    def paths(self) -> Iterator[str]:
        """Every path the page can ask for (what ``--export`` writes)."""
        yield "index.html"
        for p in sorted(STATIC.rglob("*")):
            if p.is_file() and p.name != "index.html":
                yield "static/" + p.relative_to(STATIC).as_posix()
        yield "data/index.json"
        root = self.catalog.root
        for p in sorted(root.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                yield "out/" + p.relative_to(root).as_posix()
        for it in self.catalog.items.values():
            if it.record.get("media"):
                yield it.record["media"]
            for tid in it.tracks:
                tr = self.track(it.id, tid)
                base = f"data/{it.id}/{tid}/"
                yield base + "meta.json"
                n_verts, _, _ = tr.mesh_status(self.mesher)
                if n_verts:
                    yield base + "faces.bin"
                for c in range((tr.n_frames + CHUNK - 1) // CHUNK):
                    if n_verts:
                        yield base + f"verts_{chunk_name(c)}.bin"
                    yield base + f"frames_{chunk_name(c)}.json"


def export_site(site: Site, dest: str | Path) -> int:
    """Write every path of ``site`` under ``dest``; returns the number of files."""
    from emoca.io.atomic import atomic_write

    dest = Path(dest)
    count = 0
    for path in site.paths():
        body, _ = site.get(path)
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, Path):
            shutil.copyfile(body, target)
        else:
            with atomic_write(target, "wb") as f:
                f.write(body)
        count += 1
    return count


def _handler(site: Site, quiet: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "emoca-view"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            if not quiet:
                super().log_message(format, *args)

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            path = unquote(urlsplit(self.path).path)
            try:
                body, ctype = site.get(path)
            except NotFound as e:
                self.send_error(HTTPStatus.NOT_FOUND, str(e))
                return
            except InputError as e:
                self.send_error(HTTPStatus.UNPROCESSABLE_ENTITY, " ".join(str(e).split()))
                return
            if isinstance(body, Path):
                self._send_file(body, ctype)
            else:
                self._send(body, ctype)

        def _send(self, body: bytes, ctype: str) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(body)

        def _send_file(self, path: Path, ctype: str) -> None:
            # byte ranges: <video> seeks with them, and needs them to scrub a long file
            size = path.stat().st_size
            start, end = 0, size - 1
            rng = self.headers.get("Range")
            status = HTTPStatus.OK
            if rng and rng.startswith("bytes="):
                a, _, b = rng.removeprefix("bytes=").split(",")[0].partition("-")
                try:
                    if a:
                        start, end = int(a), int(b) if b else size - 1
                    else:
                        start, end = max(0, size - int(b)), size - 1
                except ValueError:
                    start, end = 0, size - 1
                end = min(end, size - 1)
                if start > end:
                    self.send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                    return
                status = HTTPStatus.PARTIAL_CONTENT
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            if status == HTTPStatus.PARTIAL_CONTENT:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            with path.open("rb") as f:
                f.seek(start)
                left = end - start + 1
                try:
                    while left > 0:
                        buf = f.read(min(left, 1 << 20))
                        if not buf:
                            break
                        self.wfile.write(buf)
                        left -= len(buf)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the browser cancels range requests while seeking

    return Handler


def serve(site: Site, port: int = 8000, quiet: bool = False) -> ThreadingHTTPServer:
    """A threaded server on 127.0.0.1:``port`` (0: a free port), not yet serving.

    Call ``serve_forever()`` on the result; ``server_address[1]`` is the port.
    """
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(site, quiet))
    server.daemon_threads = True
    return server
