"""The webhook's registration for an operator reached by URL, outside the chart.

The chart's MutatingWebhookConfiguration (charts/maxtune/templates/webhook/) is the
production form, reached through a Service. An operator run as a plain process (the
tests, the benchmarks, development against a local plane) is reached by URL instead;
this builds the same two opt-in entries for it, both failing open, so that every such
caller registers the webhook one way.
"""

from __future__ import annotations

import base64
from typing import Any


def webhook_configuration(
    name: str, url: str, ca_pem: bytes, excluded: list[str], *, timeout_seconds: int = 3
) -> dict[str, Any]:
    """Pods opted in by label, or by namespace label unless the pod says "false"."""
    common = {
        "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ],
        "failurePolicy": "Ignore",
        "sideEffects": "None",
        "timeoutSeconds": timeout_seconds,
        "admissionReviewVersions": ["v1"],
        "matchPolicy": "Equivalent",
        "reinvocationPolicy": "IfNeeded",
    }
    not_excluded = {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excluded}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "pod-opt-in.webhook.maxtune.io",
                **common,
                "namespaceSelector": {"matchExpressions": [not_excluded]},
                "objectSelector": {"matchLabels": {"maxtune.io/inject": "true"}},
            },
            {
                "name": "namespace-opt-in.webhook.maxtune.io",
                **common,
                "namespaceSelector": {
                    "matchLabels": {"maxtune.io/inject": "enabled"},
                    "matchExpressions": [not_excluded],
                },
                "objectSelector": {
                    "matchExpressions": [
                        {
                            "key": "maxtune.io/inject",
                            "operator": "NotIn",
                            "values": ["true", "false"],
                        }
                    ]
                },
            },
        ],
    }
