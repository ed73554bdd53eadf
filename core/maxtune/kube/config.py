"""Where the cluster is: one loader for the agent, the operator and the CLI.

The order is the one kubectl users expect, made explicit: a kubeconfig named
on the command line; else the pod's service account (in-cluster); else
$KUBECONFIG; else ~/.kube/config. With none of them, one line says what to
do, never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes import client, config

_FIX = "pass --kubeconfig FILE, set KUBECONFIG, or run in a pod with a service account"


class ConfigError(Exception):
    """No usable cluster configuration; the message is one line a person can act on."""


def _kubeconfig_files() -> list[Path]:
    named = os.environ.get("KUBECONFIG", "")
    files = [Path(p).expanduser() for p in named.split(os.pathsep) if p]
    return files or [Path("~/.kube/config").expanduser()]


def load_configuration(kubeconfig: str | Path | None = None) -> client.Configuration:
    """The cluster's configuration; raises ConfigError with the fix when there is none."""
    cfg = client.Configuration()
    try:
        if kubeconfig is not None:
            path = Path(kubeconfig).expanduser()
            if not path.is_file():
                raise ConfigError(f"no cluster configuration: kubeconfig {path} does not exist")
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(path), client_configuration=cfg
            )
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            files = [f for f in _kubeconfig_files() if f.is_file()]
            if not files:
                raise ConfigError(f"no cluster configuration: {_FIX}")
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.pathsep.join(str(f) for f in files), client_configuration=cfg
            )
    except config.ConfigException as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ConfigError(f"no usable cluster configuration ({detail}): {_FIX}") from None
    except (OSError, ValueError) as exc:  # unreadable file, malformed YAML
        detail = " ".join(str(exc).split())[:300]
        raise ConfigError(f"no readable cluster configuration ({detail}): {_FIX}") from None
    cfg.retries = 0  # callers decide when to try again (maxtune.kube.Backoff)
    cfg.connection_pool_maxsize = 16
    return cfg
