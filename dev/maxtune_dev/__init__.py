"""maxtune's development tooling: never shipped in the wheel or the images.

The local control plane (`localplane`), the demo (`demo`), the local pod runner
(`localrun`) and the test support shared by the tests and the benchmarks
(`testkit`) live here. They depend on the product (`maxtune`); the product never
imports them (`make lint` checks it with import-linter).
"""
