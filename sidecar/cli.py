"""``claude-sidecar`` command line: serve | demo | fake-upstream | report | check."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sidecar.errors import ConfigError


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the proxy (127.0.0.1:8788 by default)")
    p.add_argument("--host")
    p.add_argument("--port")
    p.add_argument("--config", help="YAML policy/config file")
    p.add_argument("--upstream-url")
    p.add_argument("--store")
    p.add_argument("--admin-port")
    p.add_argument("--log-level")


def cmd_serve(args: argparse.Namespace) -> int:
    from sidecar.app import build_sidecar
    from sidecar.server.listeners import run
    from sidecar.settings import load_settings
    from sidecar.telemetry.logs import configure_logging

    flags = {
        "host": args.host,
        "port": args.port,
        "upstream_url": args.upstream_url,
        "store": args.store,
        "admin_port": args.admin_port,
        "log_level": args.log_level,
    }

    try:
        settings = load_settings(flags, config_path=args.config)
        configure_logging(settings.log_level)
        check_admin_exposure(settings)
        sidecar = build_sidecar(settings)
    except ConfigError as exc:
        print(f"claude-sidecar: configuration error: {exc}", file=sys.stderr)
        return 2
    sidecar.settings_loader = lambda: load_settings(flags, config_path=args.config)
    warn_stale_prices(sidecar)
    return run(sidecar)


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
    demo.add_argument("--port", type=int, default=8788)
    demo.add_argument("--duration", type=float, default=20.0, help="seconds of traffic")
    demo.add_argument("--keep-running", action="store_true", help="keep serving after the traffic ends")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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

        return int(run_demo(port=args.port, duration_s=args.duration, keep_running=args.keep_running))
    return 2


if __name__ == "__main__":
    sys.exit(main())
