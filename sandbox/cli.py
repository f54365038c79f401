"""The `ledgerlink` command: run the service locally, serve simulators, mint dev tokens, demo."""

from __future__ import annotations

import argparse
import sys
import threading


def _local(args: argparse.Namespace) -> int:
    from sandbox.local import LocalRuntime

    runtime = LocalRuntime(port=args.port, auto_consent=args.auto_consent, simulator_port=args.simulator_port)
    runtime.start()
    for line in runtime.describe():
        print(line, flush=True)
    print(
        "Mint a sign-in token with: ledgerlink token --business demo --role admin. Ctrl-C to stop.",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        runtime.stop()
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from sandbox.simulators.serve import run_sandbox

    run_sandbox([args.provider], args.port, args.auto_consent)
    return 0


def _token(args: argparse.Namespace) -> int:
    from sandbox.devauth import mint_token

    print(mint_token(args.business, args.role, user_id=args.user))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sandbox.demo import run_demo

    return run_demo(port=args.port)


def _soak(args: argparse.Namespace) -> int:
    from sandbox.soak import main as soak

    return soak(duration=args.duration, businesses=args.businesses, rate=args.rate, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ledgerlink", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="run the whole service on 127.0.0.1 against the simulators")
    local.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    local.add_argument(
        "--simulator-port", type=int, default=0, help="first simulator port (default: any free)"
    )
    local.add_argument("--auto-consent", action="store_true", help="simulators approve sign-ins at once")
    local.set_defaults(run=_local)

    sandbox = commands.add_parser("sandbox", help="serve ledger simulators only")
    sandbox.add_argument(
        "--provider", default="all", choices=["xero", "quickbooks", "sage", "freeagent", "kashflow", "all"]
    )
    sandbox.add_argument("--port", type=int, default=9100, help="first port (default 9100)")
    sandbox.add_argument("--auto-consent", action="store_true")
    sandbox.set_defaults(run=_sandbox)

    token = commands.add_parser(
        "token", help="print a development sign-in token (JWT) for `ledgerlink local`"
    )
    token.add_argument("--business", required=True)
    token.add_argument("--role", choices=["admin", "standard"], default="admin")
    token.add_argument("--user", default=None, help="user id (sub); default derived from role and business")
    token.set_defaults(run=_token)

    demo = commands.add_parser("demo", help="walk a full scenario through the local runtime")
    demo.add_argument("--port", type=int, default=0, help="API port (default: any free)")
    demo.set_defaults(run=_demo)

    soak = commands.add_parser(
        "soak", help="run the local runtime under load and random ledger faults, then audit every item"
    )
    soak.add_argument("--duration", type=float, default=600, help="seconds of load and faults (default 600)")
    soak.add_argument(
        "--businesses", type=int, default=50, help="businesses over the five ledgers (default 50)"
    )
    soak.add_argument("--rate", type=float, default=None, help="items captured per second (default 1.0)")
    soak.add_argument("--seed", type=int, default=9, help="seed of the random load and faults")
    soak.set_defaults(run=_soak)

    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
