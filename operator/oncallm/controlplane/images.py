"""Container images for the local node, built on this machine without a registry.

Each image is built once with ``buildah`` and kept as a docker-archive tarball in
``~/.cache/oncallm/images/<name>-<key>.tar``; the key hashes everything the image is made
from, so the same inputs never build twice. ``LocalNode`` imports the tarballs into its
containerd, and pods name them by the references below with the default pull policy
(``IfNotPresent``): nothing is ever pulled.

- ``pause``: the pod sandbox, a static Go binary (``tools/images/pause``);
- ``busybox``: the real-failure workloads, Debian's ``busybox-static`` unpacked by mmdebstrap;
- ``coredns``: cluster DNS, CoreDNS built from its Go module (``tools/coredns``);
- ``python``: a Debian bookworm python3 base, made by mmdebstrap;
- ``oncallm``: OnCallM's own ``Dockerfile`` (the one users build) with
  ``--build-arg PYTHON_IMAGE=`` the python base.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from oncallm.controlplane.build import DEFAULT_CACHE_DIR, go_version, repo_root

log = logging.getLogger(__name__)

#: The Debian suite of every image made from Debian packages (the machine's own).
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"

PAUSE = "localhost/oncallm/pause:1"
BUSYBOX = "localhost/oncallm/busybox:1"
COREDNS = "localhost/oncallm/coredns:1.15.0"
PYTHON = "localhost/oncallm/python:3.11-bookworm"
ONCALLM = "localhost/oncallm/oncallm:dev"


@dataclass(frozen=True)
class BuiltImage:
    name: str
    ref: str
    archive: Path
    #: Seconds this call spent building (0 when the cache had it).
    build_seconds: float


def cache_dir() -> Path:
    return Path(os.environ.get("ONCALLM_CACHE_DIR", DEFAULT_CACHE_DIR))


def images_dir() -> Path:
    return repo_root() / "tools" / "images"


def _digest(parts: Iterable[bytes | str | Path]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            files = sorted(p for p in part.rglob("*") if p.is_file()) if part.is_dir() else [part]
            for path in files:
                if "__pycache__" in path.parts or path.suffix == ".pyc":
                    continue
                digest.update(str(path.relative_to(repo_root())).encode())
                digest.update(path.read_bytes())
        else:
            digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _buildah(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """buildah with its own storage under the cache, so it never touches the system's."""
    store = cache_dir() / "buildah"
    argv = [
        _need("buildah"),
        f"--root={store / 'root'}",
        f"--runroot={store / 'run'}",
        "--storage-driver=overlay",
        *args,
    ]
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(
            f"{tool} is needed to build the local node's images: "
            "apt-get install buildah mmdebstrap (.ci/run installs them)"
        )
    return path


def _build(
    name: str,
    ref: str,
    key: str,
    containerfile: Path,
    context: Path,
    build_args: dict[str, str] | None = None,
    network: bool = False,
    started: float | None = None,
) -> BuiltImage:
    """``buildah bud`` one image and save it as a docker-archive tarball."""
    archive = cache_dir() / "images" / f"{name}-{key}.tar"
    started = time.monotonic() if started is None else started
    argv = ["bud", "--quiet", "--layers=false", f"--file={containerfile}", f"--tag={ref}"]
    argv.append("--pull=never")  # every base is built here; never ask a registry
    for arg, value in (build_args or {}).items():
        argv.append(f"--build-arg={arg}={value}")
    if network:
        # pip in the builder stage reaches the package index as pip on this host does: the
        # host's network and its certificate bundle (mounted for the build only).
        argv += [
            "--network=host",
            "--volume=/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro",
        ]
    else:
        argv.append("--network=none")
    argv.append(str(context))
    try:
        _buildah(*argv)
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"buildah bud {name} failed:\n{err.stdout}\n{err.stderr}") from err
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_suffix(f".tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    _buildah("push", "--quiet", ref, f"docker-archive:{tmp}:{ref}")
    os.replace(tmp, archive)
    seconds = time.monotonic() - started
    log.info("built image %s in %.0f s (%s)", ref, seconds, archive)
    return BuiltImage(name, ref, archive, seconds)


def _cached(name: str, ref: str, key: str) -> BuiltImage | None:
    archive = cache_dir() / "images" / f"{name}-{key}.tar"
    return BuiltImage(name, ref, archive, 0.0) if archive.exists() else None


def _go_binary(module: Path, package: str, out: Path) -> None:
    env = dict(os.environ, CGO_ENABLED="0")
    subprocess.run(
        [_need("go"), "build", "-trimpath", "-ldflags=-s -w", "-o", str(out), package],
        cwd=module,
        env=env,
        check=True,
    )


def _debian_rootfs(out: Path, variant: str, packages: list[str], hooks: list[str]) -> None:
    argv = [
        _need("mmdebstrap"),
        f"--variant={variant}",
        f"--include={','.join(packages)}",
        "--aptopt=APT::Install-Recommends false",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--skip=output/dev",
    ]
    argv += [f"--customize-hook={hook}" for hook in hooks]
    argv += [SUITE, str(out), MIRROR]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"mmdebstrap failed ({done.returncode}):\n{done.stderr[-3000:]}")


def pause() -> BuiltImage:
    started = time.monotonic()
    src = images_dir()
    key = _digest([src / "pause", src / "go.mod", src / "pause.Containerfile", go_version()])
    if hit := _cached("pause", PAUSE, key):
        return hit
    with tempfile.TemporaryDirectory(prefix="oncallm-image-") as tmp:
        _go_binary(src, "./pause", Path(tmp) / "pause")
        return _build("pause", PAUSE, key, src / "pause.Containerfile", Path(tmp), started=started)


def busybox() -> BuiltImage:
    started = time.monotonic()
    src = images_dir()
    key = _digest([src / "busybox.Containerfile", SUITE, "busybox-static"])
    if hit := _cached("busybox", BUSYBOX, key):
        return hit
    with tempfile.TemporaryDirectory(prefix="oncallm-image-") as tmp:
        # The extract variant runs no hooks: the Containerfile makes the applet links.
        _debian_rootfs(Path(tmp) / "rootfs.tar", "extract", ["busybox-static"], [])
        return _build(
            "busybox", BUSYBOX, key, src / "busybox.Containerfile", Path(tmp), started=started
        )


def coredns() -> BuiltImage:
    started = time.monotonic()
    src = repo_root() / "tools" / "coredns"
    files = [src / "main.go", src / "go.mod", src / "go.sum"]
    key = _digest([*files, images_dir() / "coredns.Containerfile", go_version()])
    if hit := _cached("coredns", COREDNS, key):
        return hit
    with tempfile.TemporaryDirectory(prefix="oncallm-image-") as tmp:
        _go_binary(src, ".", Path(tmp) / "coredns")
        return _build(
            "coredns",
            COREDNS,
            key,
            images_dir() / "coredns.Containerfile",
            Path(tmp),
            started=started,
        )


_PYTHON_PACKAGES = ["python3", "python3-pip", "ca-certificates"]


def python_base() -> BuiltImage:
    started = time.monotonic()
    src = images_dir()
    key = _digest([src / "python.Containerfile", SUITE, ",".join(_PYTHON_PACKAGES)])
    if hit := _cached("python", PYTHON, key):
        _ensure_in_store(hit)
        return hit
    with tempfile.TemporaryDirectory(prefix="oncallm-image-") as tmp:
        _debian_rootfs(
            Path(tmp) / "rootfs.tar",
            "minbase",
            _PYTHON_PACKAGES,
            [
                # As in the python images of Docker Hub, pip may install into this Python:
                # the image is made to be built upon.
                'rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
                'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/etc/resolv.conf',
            ],
        )
        return _build(
            "python", PYTHON, key, src / "python.Containerfile", Path(tmp), started=started
        )


def _ensure_in_store(image: BuiltImage) -> None:
    """A cached base must be in buildah's store for a ``FROM`` to find it without a pull."""
    found = subprocess.run(
        [
            _need("buildah"),
            f"--root={cache_dir() / 'buildah' / 'root'}",
            f"--runroot={cache_dir() / 'buildah' / 'run'}",
            "--storage-driver=overlay",
            "inspect",
            "--type=image",
            image.ref,
        ],
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        _buildah("pull", "--quiet", f"docker-archive:{image.archive}")


def oncallm() -> BuiltImage:
    """OnCallM's image from the repository's Dockerfile, on the python base built here."""
    started = time.monotonic()
    base = python_base()
    root = repo_root()
    key = _digest(
        [
            root / "Dockerfile",
            root / ".dockerignore",
            root / "pyproject.toml",
            root / "README.md",
            root / "operator" / "oncallm",
            base.archive.name,
        ]
    )
    if hit := _cached("oncallm", ONCALLM, key):
        return hit
    return _build(
        "oncallm",
        ONCALLM,
        key,
        root / "Dockerfile",
        root,
        build_args={"PYTHON_IMAGE": PYTHON},
        network=True,
        started=started,
    )


#: What every node imports at start; OnCallM's image is imported only when asked for.
NODE_IMAGES = (pause, busybox, coredns)


def image_size(image: BuiltImage) -> int:
    """Bytes of the image's layers (the archive less its small manifest and config)."""
    return image.archive.stat().st_size


def main() -> None:
    """``python -m oncallm.controlplane.images``: build (or find) every image; print each
    one's size and build time."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for build in (*NODE_IMAGES, python_base, oncallm):
        started = time.monotonic()
        image = build()
        print(
            f"{image.ref:40} {image_size(image) / 1e6:7.1f} MB  "
            f"{time.monotonic() - started:6.1f} s  {image.archive}"
        )


if __name__ == "__main__":
    main()
