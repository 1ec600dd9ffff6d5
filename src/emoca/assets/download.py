"""Fetch the official archives with the user's account: resumable, verified, atomic.

A download goes to ``<name>.part`` beside its target; an interrupted one resumes with an
HTTP ``Range`` request; the finished file is checked (size, sha256 when known) and only
then renamed into place. A wrong checksum deletes the partial file and leaves nothing
at the target. Zip archives are unpacked into the assets folder, refusing any member
that would land outside it.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from emoca.assets.locate import sha256_file

__all__ = ["Archive", "ARCHIVES", "DownloadError", "download_file", "fetch_archive",
           "safe_extract"]

log = logging.getLogger(__name__)

_EMOCA = "https://download.is.tue.mpg.de/emoca/assets"


@dataclass(frozen=True)
class Archive:
    """An official archive: where it is and where it unpacks (relative to the assets dir)."""

    key: str
    url: str
    extract_to: str = "."
    sha256: str | None = None
    login: str | None = None  # the site whose account is needed


ARCHIVES: dict[str, Archive] = {a.key: a for a in (
    Archive("flame", f"{_EMOCA}/FLAME.zip", ".", login="flame.is.tue.mpg.de"),
    Archive("deca", f"{_EMOCA}/DECA.zip", ".", login="emoca.is.tue.mpg.de"),
    Archive("EMOCA", f"{_EMOCA}/EMOCA/models/EMOCA.zip", "EMOCA/models",
            login="emoca.is.tue.mpg.de"),
    Archive("EMOCA_v2_mp", f"{_EMOCA}/EMOCA/models/EMOCA_v2_mp.zip", "EMOCA/models",
            login="emoca.is.tue.mpg.de"),
    Archive("EMOCA_v2_lr_mse_20", f"{_EMOCA}/EMOCA/models/EMOCA_v2_lr_mse_20.zip",
            "EMOCA/models", login="emoca.is.tue.mpg.de"),
    Archive("EMOCA_v2_lr_cos_1.5", f"{_EMOCA}/EMOCA/models/EMOCA_v2_lr_cos_1.5.zip",
            "EMOCA/models", login="emoca.is.tue.mpg.de"),
    Archive("emotion_resnet50",
            f"{_EMOCA}/EmotionRecognition/image_based_networks/ResNet50.zip",
            "EmotionRecognition/image_based_networks", login="emoca.is.tue.mpg.de"),
    Archive("ict_facekit",
            "https://github.com/ICT-VGL/ICT-FaceKit/archive/refs/heads/master.zip",
            "ICT-FaceKit"),
)}


class DownloadError(RuntimeError):
    """A download failed, was cut off too often, or did not verify."""


ProgressFn = Callable[[int, int | None], None]


def _request(url: str, start: int, auth: tuple[str, str] | None) -> urllib.request.Request:
    req = urllib.request.Request(url)
    if start:
        req.add_header("Range", f"bytes={start}-")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        # the MPI download server takes form credentials as well
        req.data = urllib.parse.urlencode({"username": auth[0], "password": auth[1]}).encode()
    return req


def download_file(url: str, dest: str | os.PathLike, *, sha256: str | None = None,
                  auth: tuple[str, str] | None = None, retries: int = 5,
                  timeout: float = 60.0, progress: ProgressFn | None = None) -> Path:
    """Download ``url`` to ``dest`` resumably and atomically.

    Args:
        url: http(s) URL.
        dest: final path; ``dest + '.part'`` holds the partial download meanwhile.
        sha256: expected digest; on mismatch the partial file is removed and
            :class:`DownloadError` is raised, ``dest`` is left untouched.
        auth: (user, password) for the authors' servers.
        retries: how many times a cut connection is resumed.
        progress: called with (bytes so far, total or None).

    Returns:
        ``Path(dest)``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    total: int | None = None
    attempt = 0
    while True:
        start = part.stat().st_size if part.exists() else 0
        try:
            with urllib.request.urlopen(_request(url, start, auth), timeout=timeout) as resp:
                status = resp.status
                if start and status != 206:  # server ignored the range: start over
                    start = 0
                length = resp.headers.get("Content-Length")
                total = start + int(length) if length is not None else None
                with open(part, "ab" if start else "wb") as f:
                    done = start
                    while block := resp.read(1 << 16):
                        f.write(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
            if total is not None and part.stat().st_size < total:
                raise ConnectionError(f"connection closed at {part.stat().st_size} of {total}")
            break
        except urllib.error.HTTPError as e:
            if e.code == 416 and part.exists():  # range beyond end: already complete
                break
            if e.code in (401, 403):
                raise DownloadError(f"{url}: access denied ({e.code}); check the account "
                                    "credentials (EMOCA_USER / EMOCA_PASSWORD)") from e
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
        except (ConnectionError, TimeoutError, urllib.error.URLError, OSError) as e:
            attempt += 1
            if attempt > retries:
                raise DownloadError(f"{url}: failed after {retries} resumes: {e}; the partial "
                                    f"file {part} is kept, run again to resume") from e
            log.warning("%s: %s; resuming (%d/%d)", url, e, attempt, retries)
            time.sleep(min(0.2 * attempt, 2.0))
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            part.unlink()
            raise DownloadError(f"{url}: sha256 {got} does not match the expected {sha256}; "
                                "the download was removed")
    os.replace(part, dest)
    return dest


def safe_extract(zip_path: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Unpack a zip into ``out_dir``, refusing members outside it (``..``, absolute paths)."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = (out / info.filename).resolve()
            if out != target and out not in target.parents:
                raise DownloadError(f"{zip_path}: member '{info.filename}' would be written "
                                    f"outside {out}; refusing the archive")
        for info in zf.infolist():
            zf.extract(info, out)
            written.append(out / info.filename)
    return written


def fetch_archive(key: str, assets_dir: str | os.PathLike, *,
                  auth: tuple[str, str] | None = None, base_url: str | None = None,
                  keep_zip: bool = False, progress: ProgressFn | None = None) -> list[Path]:
    """Download one official archive and unpack it into the assets folder.

    ``base_url`` replaces the authors' server prefix (mirrors, tests).
    """
    if key not in ARCHIVES:
        raise KeyError(f"unknown archive '{key}'; known: {sorted(ARCHIVES)}")
    arc = ARCHIVES[key]
    url = arc.url
    if base_url is not None:
        url = f"{base_url.rstrip('/')}/{url.rsplit('/', 1)[-1]}"
    root = Path(assets_dir)
    zip_path = root / ".downloads" / f"{key}.zip"
    download_file(url, zip_path, sha256=arc.sha256, auth=auth, progress=progress)
    files = safe_extract(zip_path, root / arc.extract_to)
    if not keep_zip:
        with contextlib.suppress(FileNotFoundError):
            zip_path.unlink()
    return files
