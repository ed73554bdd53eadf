"""`maxtune cleanup`: take every `maxtune.io/` label off every node.

The chart's post-delete hook runs it, so uninstalling maxtune leaves no labels
behind (GPU Feature Discovery's labels outliving the GPU operator is a known
complaint: gpu-operator #1391). Only `maxtune.io/` keys are named in the merge
patch; nothing else on the node is touched.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import IO

from maxtune.kube import MERGE_PATCH, Kube, KubeError
from maxtune.operator.events import NODES
from maxtune.operator.labeller import label_patch
from maxtune.operator.offline import USER_AGENT
from maxtune.operator.records import read_node
from maxtune.retry import Backoff

log = logging.getLogger(__name__)


def remove_all_labels(kube: Kube, *, dry_run: bool = False, attempts: int = 3) -> tuple[int, int]:
    """(nodes cleaned, nodes that failed)."""
    cleaned = failed = 0
    for page, _ in kube.list_pages(NODES):
        for body in page:
            node = read_node(body)
            if node is None:
                continue
            patch = label_patch(node.labels, {})
            if not patch:
                continue
            if dry_run:
                log.info("would remove %s from %s", ", ".join(sorted(patch)), node.name)
                cleaned += 1
                continue
            backoff = Backoff(base_s=0.5, cap_s=4.0)
            for attempt in range(attempts):
                try:
                    kube.request(
                        "PATCH",
                        f"{NODES}/{node.name}",
                        body={"metadata": {"labels": patch}},
                        content_type=MERGE_PATCH,
                    )
                    cleaned += 1
                    break
                except KubeError as exc:
                    if exc.status == 404:
                        break
                    if attempt == attempts - 1:
                        log.error("cannot remove labels from %s: %s", node.name, exc)
                        failed += 1
                    else:
                        time.sleep(backoff.next_delay())
    return cleaned, failed


def cleanup_command(args: argparse.Namespace, out: IO[str]) -> int:
    """Remove, wait, remove again: a labeller still inside its termination grace may relabel."""
    kube = Kube.connect(args.kubeconfig, user_agent=USER_AGENT)
    cleaned, failed = remove_all_labels(kube, dry_run=args.dry_run)
    if not args.dry_run and args.settle_seconds > 0:
        time.sleep(args.settle_seconds)
        again, failed_again = remove_all_labels(kube)
        if again:
            log.info("%d node(s) were relabelled meanwhile; removed again", again)
        failed += failed_again
    verb = "would remove" if args.dry_run else "removed"
    out.write(f"{verb} maxtune.io/ labels from {cleaned} node(s)")
    out.write(f"; {failed} failed\n" if failed else "\n")
    return 1 if failed else 0
