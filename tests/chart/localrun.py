"""The local-run kit (a pod's container run as a process here) now lives in the package.

`maxtune_dev.localrun` is shared by the chart tests, the end-to-end test and `maxtune demo`;
this module keeps the chart tests' imports working.
"""

from __future__ import annotations

from maxtune_dev.localrun import (
    TOKEN_SECONDS,
    ClusterAccess,
    LocalContainer,
    flag_value,
    kapi,
    pod_token,
    pods,
    prepare,
    token_client,
    token_kubeconfig,
    unbound_token,
)

__all__ = [
    "TOKEN_SECONDS",
    "ClusterAccess",
    "LocalContainer",
    "flag_value",
    "kapi",
    "pod_token",
    "pods",
    "prepare",
    "token_client",
    "token_kubeconfig",
    "unbound_token",
]
