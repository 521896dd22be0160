"""``claude-sidecar`` command line: serve | demo | fake-upstream | report | check."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sidecar.errors import ConfigError

# serve's options: (name, what it sets). Each maps to the setting of the same name, SIDECAR_<NAME> in the
# environment and <name>: in the YAML file; the environment variable is named in --help.
SERVE_OPTIONS = (
    ("host", "address the proxy listens on (default 127.0.0.1; beyond loopback needs SIDECAR_ADMIN_TOKEN)"),
    ("port", "proxy port; apps set ANTHROPIC_BASE_URL=http://HOST:PORT (default 8788)"),
    ("upstream_url", "where calls are forwarded (default https://api.anthropic.com)"),
    ("store", "event store URL: sqlite:///path (default sqlite:///sidecar-data/events.db) or clickhouse://…"),
    ("admin_host", "address of the separate admin listener (default 127.0.0.1)"),
    ("admin_port", "move /metrics, health, /ui/ and /sidecar/v1/* to their own listener on this port"),
    ("log_level", "debug | info | warning | error (default info)"),
    ("log_format", "auto | text | json (default auto: text on a terminal, JSON lines otherwise)"),
)
SERVE_EPILOG = """\
Each option can also be set by its environment variable [in brackets] or by
its key in the YAML file given by --config (see sidecar.example.yaml).
Precedence: flag > environment > file > default. The fleet listener takes
--port + 1 unless SIDECAR_FLEET_PORT is set. SIGHUP reloads prices, budgets,
prompt-cache settings, checks and notifiers from the file.
"""


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the proxy (127.0.0.1:8788 by default)",
        description="Run the sidecar: the proxy, its admin API and metrics, the fleet listener.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, text in SERVE_OPTIONS:
        env = "SIDECAR_" + name.upper()
        p.add_argument("--" + name.replace("_", "-"), metavar=name.upper(), help=f"{text} [{env}]")
    p.add_argument("--config", metavar="FILE", help="YAML file of settings and policies [SIDECAR_CONFIG]")


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from sidecar.app import build_sidecar
    from sidecar.infra.listen import ListenError
    from sidecar.server.listeners import bind_listeners, run
    from sidecar.settings import load_settings
    from sidecar.telemetry.logs import configure_logging

    flags = {name: getattr(args, name) for name, _ in SERVE_OPTIONS}
    try:
        settings = load_settings(flags, config_path=args.config)
        configure_logging(settings.log_level, fmt=settings.log_format)
        for warning in settings.warnings:
            logging.getLogger("sidecar").warning(warning)
        check_admin_exposure(settings)
        sidecar = build_sidecar(settings)
        sockets = bind_listeners(sidecar)  # a taken port stops here, before anything says "ready"
    except ListenError as exc:
        print(f"claude-sidecar: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"claude-sidecar: configuration error: {exc}", file=sys.stderr)
        return 2
    sidecar.settings_loader = lambda: load_settings(flags, config_path=args.config)
    warn_stale_prices(sidecar)
    return run(sidecar, sockets)


def check_admin_exposure(settings: object) -> None:
    """Refuse to expose the admin API beyond loopback without a token (SPEC R-PX-9)."""
    from sidecar.settings import Settings

    assert isinstance(settings, Settings)
    admin_host = settings.admin_host if settings.admin_port is not None else settings.host
    if settings.admin_token is None and admin_host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(
            f"SIDECAR_ADMIN_TOKEN: required when the admin API listens on {admin_host} (beyond loopback)"
        )


def warn_stale_prices(sidecar: object) -> None:
    import logging
    import time

    from sidecar.app import Sidecar

    assert isinstance(sidecar, Sidecar)
    age = sidecar.prices.table.age_days(time.time())
    if age > 90:
        logging.getLogger("sidecar").warning(
            "pricing table is %d days old (%s); check for newer prices",
            int(age),
            sidecar.prices.table.version,
        )


def cmd_fake_upstream(args: argparse.Namespace) -> int:
    from sidecar.testing.fake_upstream import main as fake_main

    return fake_main(["--host", args.host, "--port", str(args.port)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claude-sidecar", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    fake = sub.add_parser("fake-upstream", help="serve the built-in fake Anthropic API (for tests and demos)")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8790)
    sub.add_parser("report", help="per-session spend and latency tables from the store (see report --help)")
    sub.add_parser("check", help="exit 1 when latency or session cost is over a ceiling (see check --help)")
    demo = sub.add_parser("demo", help="run the sidecar against the fake upstream with synthetic traffic")
    demo.add_argument("--port", type=int, help="proxy port (default 8788, or any free port when it is taken)")
    demo.add_argument("--duration", type=float, default=20.0, help="seconds the demo runs (default 20)")
    demo.add_argument(
        "--keep-running",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep serving after the traffic ends, until Ctrl+C (default: only on a terminal)",
    )
    demo.add_argument("--data-dir", help="keep the demo's event store here (default: a temporary directory)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script. Ctrl+C anywhere ends it with 130 and no traceback (serve drains and exits 0)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("\nclaude-sidecar: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("report", "check"):
        from sidecar.report.commands import check_main, report_main

        return report_main(argv[1:]) if argv[0] == "report" else check_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "fake-upstream":
        return cmd_fake_upstream(args)
    if args.command == "demo":
        from sidecar.demo.run import run_demo

        try:
            return run_demo(args.port, args.duration, args.keep_running, args.data_dir)
        except ConfigError as exc:
            print(f"claude-sidecar: {exc}", file=sys.stderr)
            return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
