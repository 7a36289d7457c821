"""A stand-in for the kubelet's log endpoint: serves planted container logs over HTTPS.

There is no kubelet in the local control plane, so pods never run. Each planted Node points
its kubelet endpoint here (``status.daemonEndpoints.kubeletEndpoint.Port`` and an
``InternalIP`` of 127.0.0.1), and the API server proxies ``GET pods/NAME/log`` to
``/containerLogs/{namespace}/{pod}/{container}`` as it would to a real kubelet.

Logs are files: ``<folder>/<namespace>/<pod>/<container>.log`` and ``...previous.log``.
A file ``<container>.delay`` beside them holds seconds to wait before answering, so tests can
hold an analysis in its Gathering phase (a slow kubelet, as on an overloaded node).
Run: ``python -m oncallm.controlplane.kubelet_logs --folder F --port P --cert C --key K``.
"""

from __future__ import annotations

import argparse
import ssl
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


def log_path(folder: Path, namespace: str, pod: str, container: str, previous: bool) -> Path:
    """Where a container's planted log lives."""
    suffix = ".previous.log" if previous else ".log"
    return folder / namespace / pod / f"{container}{suffix}"


def plant_log(
    folder: Path, namespace: str, pod: str, container: str, text: str, *, previous: bool = False
) -> Path:
    """Plant a container's log; the API server serves it from now on."""
    path = log_path(folder, namespace, pod, container, previous)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") or not text else text + "\n")
    return path


def remove_log(
    folder: Path, namespace: str, pod: str, container: str, *, previous: bool = False
) -> None:
    """Stop serving a planted log (the pod's folder goes once it is empty)."""
    path = log_path(folder, namespace, pod, container, previous)
    path.unlink(missing_ok=True)
    for parent in (path.parent, path.parent.parent):
        try:
            parent.rmdir()
        except OSError:  # not empty, or already gone
            break


def _tail(text: str, lines: int | None) -> str:
    if lines is None:
        return text
    if lines <= 0:
        return ""
    parts = text.splitlines(keepends=True)
    return "".join(parts[-lines:])


def make_handler(folder: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            if url.path == "/healthz":
                self._reply(200, "ok")
                return
            if len(parts) != 4 or parts[0] != "containerLogs":
                self._reply(404, f"no such kubelet path: {url.path}")
                return
            _, namespace, pod, container = parts
            query = parse_qs(url.query)
            previous = query.get("previous", ["false"])[0] == "true"
            tail = int(query["tailLines"][0]) if "tailLines" in query else None
            path = log_path(folder, namespace, pod, container, previous)
            delay = path.parent / f"{container}.delay"
            if delay.exists():
                deadline = time.monotonic() + float(delay.read_text() or 0)
                while delay.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
            if not path.exists():
                what = "previous terminated container" if previous else "container"
                self._reply(
                    400 if previous else 404,
                    f'{what} "{container}" in pod "{pod}" not found',
                )
                return
            self._reply(200, _tail(path.read_text(errors="replace"), tail))

        def _reply(self, code: int, body: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return  # the API server logs its proxied requests; keep test output clean

    return Handler


def serve(folder: Path, port: int, cert: Path, key: Path, host: str = "127.0.0.1") -> None:
    """Serve until killed."""
    folder.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer((host, port), make_handler(folder))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    args = parser.parse_args()
    serve(args.folder, args.port, args.cert, args.key)


if __name__ == "__main__":
    main()
