"""`helm test` for maxtune: is the installation serving what users depend on?

It runs in the operator image (Python and the kubernetes client, no torch), in the cluster, with
a service account that has no RBAC binding at all: everything it checks is open to any
authenticated client. The same file runs outside the cluster against a local control plane
(`--kubeconfig`, URLs on 127.0.0.1), which is how the project's own tests run it.

Checks (each one can be selected with --check):
  crds     the API server serves maxtune.io/v1alpha1 with both custom resources
  readyz   the operator's /readyz answers 200
  webhook  the webhook answers a pod AdmissionReview over TLS, verified against the release CA,
           allowing the pod (it fails open and never refuses)
  tls-only the webhook port does not answer plain HTTP
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

GROUP_VERSION = "maxtune.io/v1alpha1"
RESOURCES = ("gpunodeprofiles", "autotunepolicies")
TIMEOUT_S = 10.0


class CheckFailed(Exception):
    """A check found the installation not serving; the message says what to look at."""


def check_crds(args: argparse.Namespace) -> str:
    # Imported here: the other checks need nothing beyond the standard library.
    from kubernetes import client, config  # noqa: PLC0415

    if args.kubeconfig:
        config.load_kube_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    group, version = GROUP_VERSION.split("/")
    try:
        found = client.CustomObjectsApi().get_api_resources(
            group, version, _request_timeout=TIMEOUT_S
        )
    except client.ApiException as exc:
        raise CheckFailed(
            f"the API server does not serve {GROUP_VERSION} (HTTP {exc.status}): "
            "are the CRDs installed? (`kubectl get crd | grep maxtune.io`)"
        ) from exc
    served = {resource.name for resource in found.resources}
    missing = [name for name in RESOURCES if name not in served]
    if missing:
        raise CheckFailed(f"{GROUP_VERSION} is served without {', '.join(missing)}")
    return f"{GROUP_VERSION} serves {', '.join(RESOURCES)}"


def check_readyz(args: argparse.Namespace) -> str:
    try:
        with urllib.request.urlopen(args.readyz_url, timeout=TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        raise CheckFailed(f"operator /readyz unreachable at {args.readyz_url}: {exc}") from exc
    if status != 200:
        raise CheckFailed(f"operator /readyz at {args.readyz_url} answered {status}, not 200")
    return f"operator ready ({args.readyz_url})"


def _admission_review(uid: str) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "maxtune-helm-test", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "maxtune-helm-test"},
            "object": pod,
            "dryRun": True,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def check_webhook(args: argparse.Namespace) -> str:
    context = ssl.create_default_context(cafile=args.ca_file)
    uid = str(uuid.uuid4())
    request = urllib.request.Request(
        args.webhook_url,
        data=json.dumps(_admission_review(uid)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        raise CheckFailed(f"webhook {args.webhook_url} answered HTTP {exc.code}") from exc
    except (OSError, ValueError) as exc:
        raise CheckFailed(
            f"webhook {args.webhook_url} failed over TLS verified with {args.ca_file}: {exc}"
        ) from exc
    reply = body.get("response") or {}
    if reply.get("uid") != uid:
        raise CheckFailed(f"webhook answered another review (uid {reply.get('uid')!r})")
    if reply.get("allowed") is not True:
        raise CheckFailed(f"webhook refused a pod; it must fail open: {reply}")
    return f"webhook answers over verified TLS ({args.webhook_url})"


def check_tls_only(args: argparse.Namespace) -> str:
    parts = urlsplit(args.webhook_url)
    host = parts.hostname or ""
    conn = http.client.HTTPConnection(host, parts.port or 443, timeout=TIMEOUT_S)
    try:
        conn.request("GET", parts.path or "/")
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return "webhook port refuses plain HTTP"
    finally:
        conn.close()
    if 200 <= status < 400:
        raise CheckFailed(f"webhook port {host}:{parts.port} answered plain HTTP with {status}")
    return f"webhook port answers plain HTTP only with an error ({status})"


CHECKS: dict[str, Callable[[argparse.Namespace], str]] = {
    "crds": check_crds,
    "readyz": check_readyz,
    "webhook": check_webhook,
    "tls-only": check_tls_only,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="append", choices=sorted(CHECKS), help="run only these (repeatable)"
    )
    parser.add_argument("--kubeconfig", help="outside the cluster: this kubeconfig")
    parser.add_argument("--readyz-url", help="e.g. http://NAME-operator-metrics.NS.svc:8080/readyz")
    parser.add_argument("--webhook-url", help="e.g. https://NAME-webhook.NS.svc:443/mutate")
    parser.add_argument("--ca-file", help="CA that signed the webhook certificate")
    args = parser.parse_args(argv)
    args.check = args.check or list(CHECKS)
    needs = {"readyz": ("readyz_url",), "webhook": ("webhook_url", "ca_file")}
    needs["tls-only"] = ("webhook_url",)
    for check in args.check:
        for option in needs.get(check, ()):
            if not getattr(args, option):
                parser.error(f"--check {check} needs --{option.replace('_', '-')}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    failed = 0
    for name in args.check:
        try:
            print(f"ok    {name}: {CHECKS[name](args)}", flush=True)
        except CheckFailed as exc:
            failed += 1
            print(f"FAIL  {name}: {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
