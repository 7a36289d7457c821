"""Run OnCallM's operator in tests: in-process with kopf's KopfRunner, or as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kopf.testing import KopfRunner


@contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def operator_running(namespace: str, **env: str) -> Iterator[KopfRunner]:
    """The operator, watching ``namespace``, in a thread of this process."""
    with environment(ONCALLM_NAMESPACE=namespace, ONCALLM_OPERATOR_METRICS_PORT="0", **env):
        with KopfRunner(
            ["run", "--standalone", f"--namespace={namespace}", "-m", "oncallm.handlers"],
            timeout=60,
        ) as runner:
            yield runner
    if runner.exception is not None:
        raise runner.exception
    assert runner.exit_code == 0, runner.output


def operator_process(
    namespace: str, kubeconfig: Path, log: Path, **env: str
) -> subprocess.Popen[bytes]:
    """``oncallm operator`` as a child process (to SIGKILL it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "oncallm", "operator"],
        env={
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "ONCALLM_NAMESPACE": namespace,
            "ONCALLM_OPERATOR_HEALTH_PORT": "0",
            "ONCALLM_OPERATOR_METRICS_PORT": "0",
            **env,
        },
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
