"""`maxtune operator | mutate | status | cleanup`: the operator's command line.

Registration imports nothing heavy; each handler imports what it needs, so
`maxtune explain` stays instant and none of these ever imports torch.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from maxtune.cli.errors import CliError


def register(subparsers: Any) -> None:
    _register_operator(subparsers)
    _register_mutate(subparsers)
    _register_status(subparsers)
    _register_cleanup(subparsers)


# ---------------------------------------------------------------- operator


def _register_operator(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "operator",
        help="run the operator: node labeller and mutating admission webhook",
        description="The Deployment's entry point. Serves the webhook over TLS on the webhook "
        "port (POST /mutate) and /metrics, /healthz, /readyz over plain HTTP on the metrics "
        "port; the Lease holder writes node labels.",
    )
    p.add_argument("--kubeconfig", type=Path, help="default: in-cluster, else $KUBECONFIG")
    p.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE"),
        help="the operator's own namespace: never mutated, holds the Lease (env POD_NAMESPACE)",
    )
    p.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME") or socket.gethostname(),
        help="this replica's name in the Lease (env POD_NAME, else the host name)",
    )
    p.add_argument("--webhook-host", default="0.0.0.0")
    p.add_argument("--webhook-port", type=int, default=9443)
    p.add_argument("--tls-cert-file", type=Path, required=True)
    p.add_argument("--tls-key-file", type=Path, required=True)
    p.add_argument("--tls-reload-seconds", type=float, default=10.0)
    p.add_argument("--metrics-host", default="0.0.0.0")
    p.add_argument("--metrics-port", type=int, default=8080)
    p.add_argument("--leader-election", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--lease-name", default="maxtune-labeller")
    p.add_argument("--lease-duration-seconds", type=float, default=15.0)
    p.add_argument("--renew-deadline-seconds", type=float, default=10.0)
    p.add_argument("--retry-period-seconds", type=float, default=2.0)
    p.add_argument(
        "--watch-seconds",
        type=int,
        default=300,
        help="how long the API server keeps one watch open before the informer resumes it",
    )
    p.add_argument(
        "--orphan-grace-seconds",
        type=float,
        default=60.0,
        help="delete a GPUNodeProfile whose node has been gone this long",
    )
    p.add_argument(
        "--label-concurrency", type=int, default=16, help="node patches in flight at once"
    )
    p.add_argument(
        "--profile-page-size",
        type=int,
        help="GPUNodeProfiles per page when they are listed: memory held while a page is "
        "read, against requests per list (default: events.PROFILE_PAGE_SIZE, 100)",
    )
    p.add_argument(
        "--compile-cache-directory",
        type=Path,
        help="the chart's compile-cache directory (directory.json): which cache each "
        "namespace's GPU pods get; read again when it changes",
    )
    p.add_argument(
        "--shutdown-grace-seconds",
        type=float,
        default=3.0,
        help="keep answering admissions this long after SIGTERM (endpoints drain)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(handler=_run_operator)


def _run_operator(args: argparse.Namespace) -> int:
    from maxtune.operator.events import PROFILE_PAGE_SIZE  # noqa: PLC0415
    from maxtune.operator.runtime import OperatorConfig, run  # noqa: PLC0415

    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for path in (args.tls_cert_file, args.tls_key_file):
        if not path.is_file():
            raise CliError(f"TLS file {path} does not exist")
    config = OperatorConfig(
        tls_cert_file=args.tls_cert_file,
        tls_key_file=args.tls_key_file,
        identity=args.identity,
        kubeconfig=args.kubeconfig,
        namespace=args.namespace,
        webhook_host=args.webhook_host,
        webhook_port=args.webhook_port,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        leader_election=args.leader_election,
        lease_name=args.lease_name,
        lease_duration=args.lease_duration_seconds,
        renew_deadline=args.renew_deadline_seconds,
        retry_period=args.retry_period_seconds,
        watch_seconds=args.watch_seconds,
        orphan_grace_seconds=args.orphan_grace_seconds,
        tls_reload_seconds=args.tls_reload_seconds,
        label_concurrency=args.label_concurrency,
        profile_page_size=PROFILE_PAGE_SIZE
        if args.profile_page_size is None
        else args.profile_page_size,
        shutdown_grace_seconds=args.shutdown_grace_seconds,
        compile_cache_directory=args.compile_cache_directory,
    )
    if config.label_concurrency < 1:
        raise CliError(f"--label-concurrency must be at least 1, not {config.label_concurrency}")
    if config.profile_page_size < 1:
        raise CliError(f"--profile-page-size must be at least 1, not {config.profile_page_size}")
    if config.leader_election and not config.namespace:
        raise CliError("--leader-election needs --namespace (or POD_NAMESPACE)")
    import ssl  # noqa: PLC0415

    from maxtune.operator.tls import server_context  # noqa: PLC0415

    try:
        server_context(config.tls_cert_file, config.tls_key_file)
    except (ssl.SSLError, OSError) as exc:
        raise CliError(f"cannot load the TLS certificate and key: {exc}") from None
    return run(config)


# ---------------------------------------------------------------- mutate


def _register_mutate(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "mutate",
        help="preview the webhook on a pod manifest (offline or against a cluster)",
        description="Prints the pod as the admission webhook would patch it, and its decision "
        "(same code as the webhook), what it read, and what excluded the nodes when none "
        "remains for the pod.",
    )
    p.add_argument("--pod", type=Path, required=True, help="Pod manifest (YAML or JSON; - = stdin)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--profiles",
        type=Path,
        help="saved GPUNodeProfile manifests (file or folder of *.yaml, *.yml, *.json), with "
        "the nodes' Node manifests if you have them (real labels, taints, allocatable); "
        "anything else there is an error",
    )
    source.add_argument("--kubeconfig", type=Path, help="read nodes, profiles, policies from here")
    p.add_argument(
        "--as-of",
        metavar="TIME|now",
        help="judge the profiles' age at this time (ISO 8601 with a zone, or now). Default: "
        "with --profiles, each profile as of its own heartbeat (current); with --kubeconfig, now",
    )
    p.add_argument(
        "--policy", type=Path, action="append", default=[], help="AutotunePolicy manifest(s)"
    )
    p.add_argument("--namespace", help="the pod's namespace (default: its metadata, or default)")
    p.add_argument(
        "--namespace-labels",
        default="",
        help="labels of the pod's namespace, k=v,... (maxtune.io/inject=enabled opts it in)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_mutate)


def _run_mutate(args: argparse.Namespace) -> int:
    from maxtune.operator.preview import MutateError, mutate_command  # noqa: PLC0415

    try:
        return mutate_command(args, sys.stdout)
    except MutateError as exc:
        raise CliError(str(exc)) from None


# ---------------------------------------------------------------- status and cleanup


def _register_status(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "status",
        help="the cluster's readiness table: GPU nodes, classes, modes, profiles, labels",
    )
    p.add_argument("--kubeconfig", type=Path)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_status)


def _run_status(args: argparse.Namespace) -> int:
    from maxtune.operator.readiness import status_command  # noqa: PLC0415

    return status_command(args, sys.stdout)


def _register_cleanup(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "cleanup",
        help="remove every maxtune.io/ node label (the chart's uninstall hook runs this)",
    )
    p.add_argument("--kubeconfig", type=Path)
    p.add_argument("--dry-run", action="store_true", help="list what would be removed")
    p.add_argument(
        "--settle-seconds",
        type=float,
        default=5.0,
        help="after removing, wait this long and remove again (a terminating labeller may "
        "have relabelled); 0: one pass",
    )
    p.set_defaults(handler=_run_cleanup)


def _run_cleanup(args: argparse.Namespace) -> int:
    from maxtune.operator.cleanup import cleanup_command  # noqa: PLC0415

    logging.basicConfig(level="INFO", format="%(levelname)s %(message)s")
    return cleanup_command(args, sys.stdout)
