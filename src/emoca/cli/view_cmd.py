"""``emoca view OUT_DIR``: serve the viewer page for an output folder on 127.0.0.1, or
write it as static files (``--export SITE_DIR``). Parse -> :mod:`emoca.viewer.server`."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", help="output folder of emoca reconstruct, fit or animate")
    p.add_argument("--port", type=int, default=8000,
                   help="port on 127.0.0.1 (0: any free port; default 8000)")
    p.add_argument("--export", metavar="SITE_DIR",
                   help="write the page and its data as static files instead of serving")
    p.add_argument("--assets", help="assets folder with the FLAME files, to show the "
                   "per-frame meshes of reconstruct video tracks (default $EMOCA_HOME)")
    p.add_argument("--quiet", action="store_true", help="no request log")


def run(args: argparse.Namespace) -> int:
    from emoca.errors import UsageError
    from emoca.viewer.server import Site, export_site, serve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a port number (0..65535)")
    site = Site(args.out_dir, assets=args.assets)
    if args.export:
        n = export_site(site, args.export)
        print(f"wrote {n} files to {args.export} (serve it with any static server, e.g. "
              f"python -m http.server -d {args.export})")
        return 0
    try:
        server = serve(site, args.port, quiet=args.quiet)
    except OSError as e:
        raise UsageError(f"--port {args.port}: cannot listen on 127.0.0.1 ({e.strerror})") from e
    host, port = server.server_address[:2]
    print(f"emoca view: http://{host}:{port}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
