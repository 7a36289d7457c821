"""Build the control plane binary from ``tools/controlplane`` once, and cache it.

The cache key is a hash of the module's go.mod, go.sum and sources, so a second build of the
same sources costs nothing and a dependency bump builds anew.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: Where built binaries are kept, one folder per cache key. Override: ONCALLM_CACHE_DIR.
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "oncallm"


def repo_root() -> Path:
    """The checkout holding ``tools/controlplane`` (the package is installed editable)."""
    env = os.environ.get("ONCALLM_REPO")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3]


def source_dir() -> Path:
    return repo_root() / "tools" / "controlplane"


def cache_key(src: Path) -> str:
    digest = hashlib.sha256()
    for name in sorted(p.name for p in src.iterdir() if p.suffix in {".go", ".mod", ".sum"}):
        digest.update(name.encode())
        digest.update((src / name).read_bytes())
    digest.update(go_version().encode())
    return digest.hexdigest()[:16]


def go_version() -> str:
    """``go env GOVERSION``, part of every cache key of a Go build."""
    go = shutil.which("go")
    if go is None:
        return "no-go"
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def binary_path(cache_dir: Path | None = None) -> Path:
    """Where the binary for the current sources lives (it may not be built yet)."""
    src = source_dir()
    base = cache_dir or Path(os.environ.get("ONCALLM_CACHE_DIR", DEFAULT_CACHE_DIR))
    return base / "controlplane" / cache_key(src) / "controlplane"


def ensure_binary(cache_dir: Path | None = None) -> Path:
    """The control plane binary, built first if the cache lacks it."""
    target = binary_path(cache_dir)
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(
            "the Go toolchain is needed to build the local control plane: install Go 1.26+ "
            "(https://go.dev/doc/install) or set ONCALLM_CONTROLPLANE_BIN to a built binary"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # One temporary name per process: two processes building the same key at once (two test
    # runs in one checkout) must not rename each other's half-written file.
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    log.info("building the control plane (first time only; several minutes) into %s", target)
    started = time.monotonic()
    subprocess.run(
        [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), "."],
        cwd=source_dir(),
        check=True,
    )
    os.replace(tmp, target)
    log.info("built the control plane in %.0f s", time.monotonic() - started)
    return target


def resolve_binary() -> Path:
    """ONCALLM_CONTROLPLANE_BIN when set, else the cached build (building it if needed)."""
    env = os.environ.get("ONCALLM_CONTROLPLANE_BIN")
    if env:
        return Path(env)
    return ensure_binary()
