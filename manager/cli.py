"""`train-act-manager --data_root DIR --runs_root DIR [--host 127.0.0.1] [--port 8080]`."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train-act-manager",
        description="Training Manager: inspect and curate datasets, start, follow and stop training runs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data_root",
        default=os.environ.get("ACT_INPUT_DIR"),
        help="folder searched for datasets (curation writes new datasets here)",
    )
    p.add_argument(
        "--runs_root",
        default=os.environ.get("ACT_OUTPUT_DIR"),
        help="folder of training outputs (new runs are created here)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind; anything but 127.0.0.1/localhost requires the token",
    )
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--token",
        default=os.environ.get("TRAIN_ACT_MANAGER_TOKEN"),
        help="access token (default: generated at start when the host is not local)",
    )
    p.add_argument(
        "--no_token",
        action="store_true",
        help="no token even on a non-local host (only behind your own authentication)",
    )
    p.add_argument(
        "--cache_dir", default=None, help="decoded-episode cache (default RUNS_ROOT/.manager_cache)"
    )
    return p


def resolve_token(host: str, token: str | None, no_token: bool = False) -> str | None:
    """The token the server requires: the given one, else a fresh one on any non-local host."""
    if token:
        return token
    if host in LOCAL_HOSTS or no_token:
        return None
    return secrets.token_urlsafe(24)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.data_root or not args.runs_root:
        print("error: --data_root and --runs_root are required", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    token = resolve_token(args.host, args.token, args.no_token)
    import uvicorn

    from manager.app import create_app

    app = create_app(args.data_root, args.runs_root, token=token, cache_dir=args.cache_dir)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{shown}:{args.port}/"
    print("Training Manager", flush=True)
    print(f"  data root: {app.state.data_root}", flush=True)
    print(f"  runs root: {app.state.runs_root}", flush=True)
    print(f"  open: {url}?token={token}" if token else f"  open: {url}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
