"""Container images of maxtune, built here with buildah from a local Debian base (no registry).

`make image` (python -m imagebuild build) builds the Dockerfile's `operator` and `agent` targets
with `buildah bud --isolation chroot` on vfs storage, from a bookworm base that mmdebstrap makes
(base.py), and reuses an image while its inputs (context.py) are unchanged (build.py).
"""
