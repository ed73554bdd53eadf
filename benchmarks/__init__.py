"""maxtune's CPU benchmarks (issue 6): the webhook under load and a 2,000-node fleet.

    python -m benchmarks.run        # everything, in sequence (what `make bench` runs)
    python -m benchmarks.webhook    # the admission webhook alone
    python -m benchmarks.fleet      # the labeller at fleet scale alone

Every benchmark starts its own real control plane (maxtune_dev.localplane), the
real `maxtune operator` process with real TLS, and writes its results to
docs/benchmarks/ (Markdown for people, JSON under data/ for traceability).
These are measurements, not tests: nothing asserts the numbers. The H100
scripts under benchmarks/agent/ are separate (docs/benchmarks/agent-h100.md).
"""
