"""``emoca assets check|download|synthetic``."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from emoca.assets.download import ARCHIVES, fetch_archive
from emoca.assets.locate import Assets, format_check_table

DEFAULT_ARCHIVES = ["flame", "deca", "EMOCA_v2_lr_mse_20"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="table of the official files found")
    c.add_argument("dir", nargs="?", help="assets folder (default: $EMOCA_HOME or "
                   "~/.cache/emoca)")
    c.add_argument("--no-verify", action="store_true", help="skip sha256 checks")
    c.add_argument("--quick", action="store_true",
                   help="only look for the files (by default each file is opened with the "
                        "safe loaders and its keys and shapes compared with the official "
                        "layout: seconds per model)")
    d = sub.add_parser("download", help="fetch official archives with your account")
    d.add_argument("names", nargs="*", default=None,
                   help=f"archives (default: {' '.join(DEFAULT_ARCHIVES)}; known: "
                        f"{' '.join(ARCHIVES)})")
    d.add_argument("--dir", help="assets folder")
    d.add_argument("--user", help="account name (or $EMOCA_USER; prompted otherwise)")
    d.add_argument("--base-url", help="mirror replacing the authors' server")
    s = sub.add_parser("synthetic", help="write look-alike official files (random weights, "
                       "for trying the pipeline out; NOT the real models)")
    s.add_argument("dir", help="assets folder to write; then pass --assets DIR")
    s.add_argument("--only", default="all", metavar="PARTS",
                   help="comma list of flame, deca, emoca, emotion, emodeca (default: all)")
    s.add_argument("--models", default=None, metavar="NAMES",
                   help="EMOCA models for the emoca part, comma list or 'all' (default: "
                        "EMOCA_v2_lr_mse_20, the one `emoca reconstruct` uses)")
    s.add_argument("--seed", type=int, default=0)


def _credentials(user: str | None) -> tuple[str, str] | None:
    user = user or os.environ.get("EMOCA_USER")
    password = os.environ.get("EMOCA_PASSWORD")
    if user is None and sys.stdin.isatty():
        user = input("account (the e-mail you registered with): ").strip() or None
    if user is not None and password is None:
        if not sys.stdin.isatty():
            raise ValueError("set EMOCA_PASSWORD (no terminal to prompt for the password)")
        password = getpass.getpass("password: ")
    return (user, password) if user is not None else None


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        assets = Assets(args.dir)
        rows = assets.check(verify=not args.no_verify)
        deep = {}
        if not args.quick:
            from emoca.model.asset_check import deep_check

            deep = {r.spec.key: deep_check(r.spec.key, r.path, assets.root)
                    for r in rows if r.path is not None}
        print(format_check_table(rows, assets.root, deep))
        bad = any(not d.ok for d in deep.values())
        return 0 if not assets.missing_required() and not bad else 1
    if args.action == "synthetic":
        from emoca.assets.synthetic_tree import parse_models, parse_parts, write_synthetic_tree

        try:
            parts, models = parse_parts(args.only), parse_models(args.models)
        except ValueError as e:
            print(f"emoca assets synthetic: {e}", file=sys.stderr)
            return 2
        root = write_synthetic_tree(args.dir, parts, models, seed=args.seed)
        shown = [p if p != "emoca" else f"emoca ({', '.join(models)})" for p in parts]
        print(f"look-alike assets (random weights, NOT the real models) written to {root}: "
              f"{', '.join(shown)}\ntry: emoca reconstruct PHOTO -o OUT --assets {root}")
        return 0
    assets = Assets(args.dir)
    auth = _credentials(args.user)
    from tqdm import tqdm

    for name in args.names or DEFAULT_ARCHIVES:
        bar = tqdm(desc=name, unit="B", unit_scale=True, leave=True)

        def progress(done: int, total: int | None, bar: tqdm = bar) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        files = fetch_archive(name, assets.root, auth=auth, base_url=args.base_url,
                              progress=progress)
        bar.close()
        print(f"{name}: {len(files)} files unpacked into {Path(assets.root)}")
    return 0
