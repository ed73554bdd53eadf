"""The one Kubernetes client of maxtune: the agent, the operator and the CLI share it.

`load_configuration` finds the cluster the way every Kubernetes tool does (an explicit
kubeconfig, else the pod's service account, else $KUBECONFIG, else ~/.kube/config) and
fails with one line (`ConfigError`) when there is none. `Kube` speaks plain JSON over the
official `kubernetes` package's connection, TLS and token refresh: lists in pages, watches
as streams of events, every failure as one `KubeError`.
"""

from maxtune.kube.client import MERGE_PATCH, Kube, KubeError, WatchEvent
from maxtune.kube.config import ConfigError, load_configuration

__all__ = [
    "MERGE_PATCH",
    "ConfigError",
    "Kube",
    "KubeError",
    "WatchEvent",
    "load_configuration",
]
