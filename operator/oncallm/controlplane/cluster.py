"""Start and stop a local control plane; each part is a process of the one built binary.

The parts and why each is there:

- etcd: the API server's storage (``--unsafe-no-fsync``: a test cluster need not survive a
  power cut, and fsync dominates write latency on a shared disk).
- kube-apiserver: RBAC on, static token authentication, the kubeadm/kind service range
  ``10.96.0.0/12``, and the ``TaintNodesByCondition`` admission plugin off so planted Nodes
  keep exactly the taints a test gives them.
- kube-controller-manager with only the garbage collector, namespace and service account
  controllers: owner references, namespace deletion and ``default`` ServiceAccounts behave
  as in a cluster, while no workload, endpoint or node controller rewrites planted state.
- a kubelet-log server (:mod:`oncallm.controlplane.kubelet_logs`) behind planted Nodes.

With ``node=True`` (``oncallm controlplane up --node``) a real node joins
(:mod:`oncallm.controlplane.node`): containerd, kubelet, kube-proxy, a CNI bridge and CoreDNS,
plus kube-scheduler and the controller manager's workload controllers. Those would rewrite
planted state, which is why the default control plane runs without them.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from oncallm.controlplane import certs, images
from oncallm.controlplane.build import repo_root, resolve_binary
from oncallm.controlplane.kubelet_logs import plant_log, remove_log
from oncallm.controlplane.node import CLUSTER_DOMAIN, NODE_IP, NODE_NAME, LocalNode, check_host

log = logging.getLogger(__name__)

#: kind's and kubeadm's default service range, so planted objects quote real-looking IPs.
SERVICE_CIDR = "10.96.0.0/12"
#: Controllers that keep the API honest without touching planted pods, endpoints or nodes.
CONTROLLERS = "garbage-collector-controller,namespace-controller,serviceaccount-controller"
#: With a node: every controller a cluster runs by default (deployment, replicaset, statefulset,
#: daemonset, job, cronjob, endpoints and EndpointSlices, PV binder, PVC protection,
#: resourcequota, node lifecycle, pod GC, the kube-root-ca.crt publisher, ...).
NODE_CONTROLLERS = "*"
#: How long the API server (or the node) may take to say ready; a cold start on 2 busy cores
#: takes ~10 s (the node: about a minute).
READY_TIMEOUT = 120.0
#: The Node address type the API server tries first to reach a node's kubelet: planted Nodes
#: keep their own addresses (a scenario's InternalIP is evidence) and get one of this type,
#: 127.0.0.1, for the kubelet-log server. The API server accepts any type name here.
KUBELET_ADDRESS_TYPE = "OnCallMKubeletLogs"
#: Manifests a node's control plane applies: RBAC for the API server's kubelet client, CoreDNS.
ADDONS = Path(__file__).parent / "addons"
#: The default folder of ``oncallm controlplane up``; tests use a temporary one each run.
DEFAULT_FOLDER = Path(os.environ.get("ONCALLM_CONTROLPLANE_DIR", "/tmp/oncallm-controlplane"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class State:
    """What ``up`` started, kept in ``state.json`` so ``down`` and other processes find it."""

    folder: str
    binary: str
    apiserver_port: int
    etcd_port: int
    etcd_peer_port: int
    kubelet_port: int
    admin_token: str
    pids: dict[str, int] = field(default_factory=dict)
    #: the address type planted Nodes route pods/log with (InternalIP for a control plane
    #: started before KUBELET_ADDRESS_TYPE existed)
    kubelet_address_type: str = "InternalIP"
    #: Where the API server listens: loopback, or the node's bridge address with a node.
    apiserver_host: str = "127.0.0.1"
    #: A real node runs beside it (``up --node``).
    node: bool = False
    #: The real kubelet's port on the node's address (0 without a node).
    node_kubelet_port: int = 0


class LocalControlPlane:
    """A real etcd + kube-apiserver + kube-controller-manager on loopback ports."""

    def __init__(self, folder: Path | None = None, *, node: bool = False) -> None:
        self.folder = Path(folder or DEFAULT_FOLDER).resolve()
        self.state: State | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._node = node
        #: Seconds the last :meth:`up` took: ``up`` in all, and with a node ``images``
        #: (building any image the cache lacked), ``node_ready`` and ``node``.
        self.timings: dict[str, float] = {}

    # -- paths ---------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.folder / "kubeconfig"

    @property
    def logs_folder(self) -> Path:
        """Planted container logs, served by the kubelet-log server."""
        return self.folder / "kubelet-logs"

    @property
    def kubectl(self) -> Path:
        return self.folder / "bin" / "kubectl"

    @property
    def server(self) -> str:
        assert self.state is not None, "the control plane is not up"
        return f"https://{self.state.apiserver_host}:{self.state.apiserver_port}"

    @property
    def has_node(self) -> bool:
        """Whether a real node runs beside this control plane."""
        return bool(self.state.node if self.state else self._node)

    @property
    def node(self) -> LocalNode:
        return LocalNode(self.folder)

    @property
    def kubelet_port(self) -> int:
        assert self.state is not None, "the control plane is not up"
        return self.state.kubelet_port

    # -- lifecycle -----------------------------------------------------------------------
    @classmethod
    def attach(cls, folder: Path | None = None) -> LocalControlPlane:
        """The control plane another process started in ``folder`` (reads state.json)."""
        plane = cls(folder)
        path = plane.folder / "state.json"
        if not path.exists():
            raise RuntimeError(
                f"no local control plane in {plane.folder}: "
                "start one with `oncallm controlplane up`"
            )
        plane.state = State(**json.loads(path.read_text()))
        return plane

    @classmethod
    def running_or_started(
        cls, folder: Path | None = None, *, node: bool = False
    ) -> LocalControlPlane:
        """The control plane running in ``folder``, or a new one started there (with a real
        node when ``node``; a running one in the other mode is an error)."""
        try:
            plane = cls.attach(folder)
        except RuntimeError:
            plane = None
        if plane is not None:
            if plane.is_running():
                if plane.has_node != node:
                    have = "with" if plane.has_node else "without"
                    raise RuntimeError(
                        f"the control plane in {plane.folder} runs {have} a node: "
                        "`oncallm controlplane down` it first"
                    )
                return plane
            plane.down()  # a stale state.json from a stopped run
        log.info("starting the local control plane in %s", cls(folder).folder)
        return cls(folder, node=node).up()

    def is_running(self) -> bool:
        if self.state is None:
            return False
        return all(_alive(pid) for pid in self.state.pids.values())

    def up(self, crds: Path | None = None) -> LocalControlPlane:
        """Start every part, wait for ``/readyz``, install the CRDs; returns self."""
        started = time.monotonic()
        binary = resolve_binary()
        self.folder.mkdir(parents=True, exist_ok=True)
        node = self.node if self._node else None
        if node is not None:
            check_host()
            node.reset()
            node.setup_network()  # the API server listens on the bridge's address
        # With a node, pods reach the API server by the in-cluster names (kopf uses
        # kubernetes.default.svc) and the kubelet serves on the node's address.
        in_cluster = (NODE_IP, "kubernetes.default.svc", f"kubernetes.default.svc.{CLUSTER_DOMAIN}")
        pki = certs.generate(self.folder / "pki", extra_hosts=in_cluster if node else ())
        self.state = State(
            folder=str(self.folder),
            binary=str(binary),
            apiserver_port=free_port(),
            etcd_port=free_port(),
            etcd_peer_port=free_port(),
            kubelet_port=free_port(),
            admin_token=secrets.token_hex(24),
            kubelet_address_type=KUBELET_ADDRESS_TYPE,
            apiserver_host=NODE_IP if node else "127.0.0.1",
            node=node is not None,
            node_kubelet_port=free_port() if node else 0,
        )
        cm_token = secrets.token_hex(24)
        tokens = (
            f'{self.state.admin_token},oncallm-admin,oncallm-admin,"system:masters"\n'
            f'{cm_token},system:kube-controller-manager,kcm,"system:masters"\n'
        )
        node_tokens = {part: secrets.token_hex(24) for part in ("kubelet", "scheduler", "proxy")}
        if node is not None:
            # The identities kubeadm gives these parts, so the Node authorizer and the
            # bootstrap RBAC roles (system:kube-scheduler, system:node-proxier) apply.
            tokens += (
                f'{node_tokens["kubelet"]},system:node:{NODE_NAME},kubelet,"system:nodes"\n'
                f"{node_tokens['scheduler']},system:kube-scheduler,scheduler\n"
                f"{node_tokens['proxy']},system:kube-proxy,kube-proxy\n"
            )
        (self.folder / "tokens.csv").write_text(tokens)
        (self.folder / "tokens.csv").chmod(0o600)
        (self.folder / "bin").mkdir(exist_ok=True)
        if self.kubectl.is_symlink() or self.kubectl.exists():
            self.kubectl.unlink()
        self.kubectl.symlink_to(binary)
        self._write_kubeconfig(self.kubeconfig, self.state.admin_token, "oncallm-admin")
        self._write_kubeconfig(
            self.folder / "controller-manager.kubeconfig", cm_token, "kube-controller-manager"
        )
        if node is not None:
            for part, user in (
                ("kubelet", f"system:node:{NODE_NAME}"),
                ("scheduler", "system:kube-scheduler"),
                ("proxy", "system:kube-proxy"),
            ):
                self._write_kubeconfig(self.folder / f"{part}.kubeconfig", node_tokens[part], user)
        s = self.state
        etcd_data = self.folder / "etcd"
        self._spawn(
            "etcd",
            [
                "etcd",
                "--name=local",
                f"--data-dir={etcd_data}",
                f"--listen-client-urls=http://127.0.0.1:{s.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{s.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{s.etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{s.etcd_peer_port}",
                f"--initial-cluster=local=http://127.0.0.1:{s.etcd_peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                "kube-apiserver",
                f"--etcd-servers=http://127.0.0.1:{s.etcd_port}",
                f"--bind-address={self.state.apiserver_host}",
                f"--advertise-address={self.state.apiserver_host}",
                f"--secure-port={s.apiserver_port}",
                f"--cert-dir={self.folder / 'pki'}",
                f"--tls-cert-file={pki.apiserver_cert}",
                f"--tls-private-key-file={pki.apiserver_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--token-auth-file={self.folder / 'tokens.csv'}",
                # With a node, as in kubeadm: the Node authorizer and NodeRestriction.
                "--authorization-mode=Node,RBAC" if node else "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--kubelet-preferred-address-types={KUBELET_ADDRESS_TYPE},InternalIP",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                f"--kubelet-client-certificate={pki.kubelet_cert}",
                f"--kubelet-client-key={pki.kubelet_key}",
                *(
                    # A real node gets its not-ready taints; its address is a valid endpoint.
                    ["--enable-admission-plugins=NodeRestriction"]
                    if node
                    else [
                        "--disable-admission-plugins=TaintNodesByCondition",
                        # The API server's own Endpoints would be 127.0.0.1, which Endpoints
                        # reject.
                        "--endpoint-reconciler-type=none",
                    ]
                ),
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._spawn(
            "kubelet-logs",
            [
                sys.executable,
                "-m",
                "oncallm.controlplane.kubelet_logs",
                f"--folder={self.logs_folder}",
                f"--port={s.kubelet_port}",
                f"--cert={pki.kubelet_cert}",
                f"--key={pki.kubelet_key}",
            ],
            own_binary=False,
        )
        self._wait_ready()
        self._spawn(
            "kube-controller-manager",
            [
                "kube-controller-manager",
                f"--kubeconfig={self.folder / 'controller-manager.kubeconfig'}",
                f"--controllers={NODE_CONTROLLERS if node else CONTROLLERS}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--root-ca-file={pki.ca_cert}",
                *([f"--service-cluster-ip-range={SERVICE_CIDR}"] if node else []),
                "--v=1",
            ],
        )
        self._save_state()
        if node is not None:
            self._start_node(node, pki)
        self.install_crds(crds or repo_root() / "crds")
        self.timings["up"] = time.monotonic() - started
        log.info(
            "local control plane%s ready at %s in %.1f s (kubeconfig %s)",
            f" with node {NODE_NAME}" if node else "",
            self.server,
            self.timings["up"],
            self.kubeconfig,
        )
        return self

    def _start_node(self, node: LocalNode, pki: certs.CertFiles) -> None:
        """kube-scheduler, containerd with the images, kubelet, kube-proxy, then CoreDNS."""
        assert self.state is not None
        node_started = time.monotonic()
        self._spawn(
            "kube-scheduler",
            [
                "kube-scheduler",
                f"--kubeconfig={self.folder / 'scheduler.kubeconfig'}",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
            ],
        )
        built = [build() for build in images.NODE_IMAGES]
        self.timings["images"] = sum(image.build_seconds for image in built)
        node.start_containerd(self._spawn)
        for image in built:
            node.import_image(image)
        self.kubectl_run("apply", "-f", str(ADDONS / "node-rbac.yaml"))
        config = node.kubelet_config(
            pki.ca_cert, pki.kubelet_cert, pki.kubelet_key, self.state.node_kubelet_port
        )
        node.start_kubelet(self._spawn, config, self.folder / "kubelet.kubeconfig")
        node.start_kube_proxy(self._spawn, self.folder / "proxy.kubeconfig", free_port())
        self._save_state()
        # A folder's etcd keeps the last run's Node and pods: only what this kubelet
        # reported since it started counts.
        since = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        self._wait_node_ready(since)
        self.timings["node_ready"] = time.monotonic() - node_started
        self.kubectl_run("apply", "-f", str(ADDONS / "coredns.yaml"))
        self.wait_pods_ready("kube-system", "k8s-app=kube-dns", since)
        self.timings["node"] = time.monotonic() - node_started

    def _check_parts(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                tail = _tail(self.folder / f"{name}.log")
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def _wait_node_ready(self, since: datetime.datetime) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            self._check_parts()
            status, body = self.request(f"/api/v1/nodes/{NODE_NAME}")
            if status == 200:
                conditions = json.loads(body).get("status", {}).get("conditions", [])
                ready = [c for c in conditions if c.get("type") == "Ready"]
                if (
                    ready
                    and ready[0].get("status") == "True"
                    and _time(ready[0].get("lastHeartbeatTime")) >= since
                ):
                    return
                last = ready[0].get("message", "") if ready else "no Ready condition yet"
            else:
                last = f"node not registered ({status})"
            time.sleep(0.5)
        raise TimeoutError(
            f"node {NODE_NAME} not Ready after {READY_TIMEOUT:.0f} s ({last}); "
            f"see {self.folder / 'kubelet.log'}"
        )

    def wait_pods_ready(
        self,
        namespace: str,
        selector: str,
        since: datetime.datetime | None = None,
        timeout: float = READY_TIMEOUT,
    ) -> None:
        """Wait until every pod matching ``selector`` is Ready (since ``since``, if given)."""
        deadline = time.monotonic() + timeout
        last = "no pods yet"
        query = urllib.parse.urlencode({"labelSelector": selector})
        while time.monotonic() < deadline:
            self._check_parts()
            status, body = self.request(f"/api/v1/namespaces/{namespace}/pods?{query}")
            pods = json.loads(body).get("items", []) if status == 200 else []
            ready = []
            for pod in pods:
                cond = [
                    c for c in pod.get("status", {}).get("conditions", []) if c["type"] == "Ready"
                ]
                fresh = since is None or (
                    cond and _time(cond[0].get("lastTransitionTime")) >= since
                )
                ready.append(bool(cond and cond[0]["status"] == "True" and fresh))
            if pods and all(ready):
                return
            if pods:
                last = f"{ready.count(False)} of {len(pods)} not Ready"
            time.sleep(0.5)
        raise TimeoutError(
            f"pods {selector} in {namespace} not Ready after {timeout:.0f} s: {last}"
        )

    def down(self) -> None:
        """Stop every part and forget the state; the folder's data stays for inspection."""
        pids = dict(self.state.pids) if self.state else {}
        for name, proc in self._procs.items():
            pids.setdefault(name, proc.pid)
        node = self.node if self.has_node or "kubelet" in pids else None
        for name in ("kube-proxy", "kubelet"):
            if name in pids:
                _terminate(pids[name])
        if node is not None:
            node.stop_containers()  # the shims and their containers outlive containerd
        for name in (
            "containerd",
            "kube-scheduler",
            "kube-controller-manager",
            "kube-apiserver",
            "kubelet-logs",
            "etcd",
        ):
            pid = pids.get(name)
            if pid is not None:
                _terminate(pid)
        if node is not None and self.state is not None:
            node.stop(self.state.binary)
        for proc in self._procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._procs.clear()
        state = self.folder / "state.json"
        if state.exists():
            state.unlink()

    def stop_apiserver(self) -> None:
        """Stop only the API server (fault tests); :meth:`start_apiserver` brings it back."""
        assert self.state is not None
        _terminate(self.state.pids["kube-apiserver"])
        proc = self._procs.get("kube-apiserver")
        if proc is not None:
            proc.wait(timeout=30)

    def start_apiserver(self) -> None:
        assert self.state is not None
        proc = self._procs.get("kube-apiserver")
        if proc is None:
            raise RuntimeError("only the process that started the control plane can restart it")
        self._procs["kube-apiserver"] = subprocess.Popen(
            proc.args, **self._popen_kwargs("kube-apiserver")
        )
        self.state.pids["kube-apiserver"] = self._procs["kube-apiserver"].pid
        self._save_state()
        self._wait_ready()
        self._wait_servable(repo_root() / "crds")

    # -- helpers -------------------------------------------------------------------------
    def _popen_kwargs(self, name: str) -> dict[str, Any]:
        logfile = open(self.folder / f"{name}.log", "ab")
        return {
            "stdout": logfile,
            "stderr": subprocess.STDOUT,
            "stdin": subprocess.DEVNULL,
            "start_new_session": True,
            "cwd": self.folder,
        }

    def _spawn(self, name: str, argv: list[str], *, own_binary: bool = True) -> None:
        assert self.state is not None
        if own_binary:
            argv = [self.state.binary, *argv]
        proc = subprocess.Popen(argv, **self._popen_kwargs(name))
        self._procs[name] = proc
        self.state.pids[name] = proc.pid

    def _save_state(self) -> None:
        assert self.state is not None
        path = self.folder / "state.json"
        path.write_text(json.dumps(asdict(self.state), indent=2))
        path.chmod(0o600)

    def _write_kubeconfig(self, path: Path, token: str, user: str) -> None:
        ca = (self.folder / "pki" / "ca.crt").read_text()
        import base64

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "oncallm-local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": base64.b64encode(ca.encode()).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "oncallm-local",
                    "context": {"cluster": "oncallm-local", "user": user, "namespace": "default"},
                }
            ],
            "current-context": "oncallm-local",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.folder / "pki" / "ca.crt"))

    def request(self, path: str, *, timeout: float = 5.0) -> tuple[int, str]:
        """GET a path of the API server as admin; (status, body)."""
        assert self.state is not None
        req = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {self.state.admin_token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context()) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    tail = _tail(self.folder / f"{name}.log")
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")
            try:
                status, body = self.request("/readyz", timeout=2)
                if status == 200:
                    return
                last = body
            except (OSError, urllib.error.URLError) as err:
                last = str(err)
            time.sleep(0.2)
        raise TimeoutError(
            f"kube-apiserver not ready after {READY_TIMEOUT:.0f} s ({last}); "
            f"see {self.folder / 'kube-apiserver.log'}"
        )

    def kubectl_run(self, *args: str, input_text: str | None = None) -> str:
        """Run kubectl against this control plane as admin; raises with its stderr on failure."""
        result = subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, ["kubectl", *args], result.stdout, result.stderr
            )
        return result.stdout

    def install_crds(self, folder: Path) -> None:
        """Apply every CRD in ``folder`` and wait until each is Established."""
        self.kubectl_run("apply", "--server-side", "--force-conflicts", "-f", str(folder))
        names = []
        for path in sorted(folder.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    names.append(f"crd/{doc['metadata']['name']}")
        if names:
            self.kubectl_run("wait", "--for=condition=Established", "--timeout=60s", *names)
        self._wait_servable(folder)

    def _wait_servable(self, folder: Path) -> None:
        """Established is not enough: until the watch cache of a new resource has initialised,
        the API server answers its lists with 429 "storage is (re)initializing"."""
        paths = []
        for path in sorted(folder.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    spec = doc["spec"]
                    version = next(v["name"] for v in spec["versions"] if v.get("served"))
                    paths.append(
                        f"/apis/{spec['group']}/{version}/{spec['names']['plural']}?limit=1"
                    )
        deadline = time.monotonic() + READY_TIMEOUT
        for api_path in paths:
            while True:
                status, body = self.request(api_path)
                if status == 200:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{api_path} still answers {status}: {body[:200]}")
                time.sleep(0.1)

    def plant_log(
        self, namespace: str, pod: str, container: str, text: str, *, previous: bool = False
    ) -> None:
        """Serve ``text`` as a container's (previous) log through ``pods/log``."""
        plant_log(self.logs_folder, namespace, pod, container, text, previous=previous)

    def remove_log(
        self, namespace: str, pod: str, container: str, *, previous: bool = False
    ) -> None:
        """Stop serving a log planted with :meth:`plant_log`."""
        remove_log(self.logs_folder, namespace, pod, container, previous=previous)

    def node_status(self) -> dict[str, Any]:
        """The part of a Node's status that routes ``pods/log`` to the kubelet-log server.

        Its address has the type :data:`KUBELET_ADDRESS_TYPE`, which the API server tries
        first, so a planted Node keeps its own addresses beside it."""
        assert self.state is not None, "the control plane is not up"
        return {
            "addresses": [{"type": self.state.kubelet_address_type, "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
        }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(pid: int, timeout: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _time(value: str | None) -> datetime.datetime:
    if not value:
        return datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
