"""The local stack's command line: `python -m functions serve|migrate|demo|settings`."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve every function and the pages on one port")
    serve.add_argument("--port", type=int, default=None, help="default: PORT or 8080")
    serve.add_argument("--data-dir", type=Path, default=None, help="default: DATA_DIR or .local/")
    serve.add_argument("--emulators", action="store_true",
                       help="start the real emulators and use the production adapters against them")

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.add_argument("--data-dir", type=Path, default=None)
    migrate.add_argument("--production", action="store_true",
                         help="use the environment as it is (Cloud SQL in Cloud Build) instead of local defaults")

    commands.add_parser("settings", help="print the configuration table (Markdown)")

    demo = commands.add_parser("demo", help="one lead end to end against a running (or an embedded) stack")
    demo.add_argument("--url", default=None, help="default: the local stack at PUBLIC_BASE_URL")
    demo.add_argument("--data-dir", type=Path, default=None, help="the stack's data dir (default .local/)")
    demo.add_argument("--mode", choices=["DRAFT_ONLY", "SEND_ALLOWED"], default=None,
                      help="set the send mode first (as ops)")
    demo.add_argument("--kill-switch", choices=["on", "off"], default=None, help="set the kill switch first")

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "migrate":
        return _migrate(args)
    if args.command == "demo":
        from functions.localstack.demo import run

        base = _local_settings(data_dir=args.data_dir)
        switch = None if args.kill_switch is None else args.kill_switch == "on"
        return run(url=args.url, data_dir=base.data_dir, mode=args.mode, kill_switch=switch)
    if args.command == "settings":
        from shared.config import markdown_table

        print(markdown_table())
        return 0
    return 2


def _local_settings(**values):
    from shared.config import Settings

    return Settings.from_env(env="local", **{k: v for k, v in values.items() if v is not None})


def _serve(args) -> int:
    from functions.localstack.app import FRONTEND_DIR
    from functions.localstack.stack import LocalStack

    base = _local_settings(port=args.port, data_dir=args.data_dir)
    stack = LocalStack(port=base.port, data_dir=base.data_dir, emulators=args.emulators)
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    # Both, explicitly: a shell that starts a job in the background makes it ignore SIGINT.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        stack.start()
        print(f"Serving on {stack.url}  (health: {stack.url}/healthz)", flush=True)
        for page, what in (("voice-training.html", "voice training for reps"), ("dashboard.html", "dashboard for ops")):
            if (FRONTEND_DIR / page).exists():
                print(f"  {what}: {stack.url}/{page}", flush=True)
        print("Ctrl-C stops everything it started.", flush=True)
        stack.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


def _migrate(args) -> int:
    from shared.bootstrap import Container
    from shared.migrate import migrate

    if args.production:
        from shared.config import Settings

        settings = Settings.from_env()
    else:
        settings = _local_settings(data_dir=args.data_dir)
    container = Container(settings)
    try:
        applied = migrate(container.db, vector_index=(settings.embedding_model, settings.embedding_dim))
    finally:
        container.close()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
