"""A real node for the local control plane: containerd and runc, the kubelet, kube-proxy, a
CNI bridge network and CoreDNS (``oncallm controlplane up --node``).

The parts and why each is there (see ``docs/controlplane.md``):

- **containerd** (Debian's, with its CRI plugin) and **runc**: they run the pods. Its root,
  state, socket and configuration live in the control plane's folder, so it never meets a
  system containerd.
- **kubelet**, built into the multi-call binary: ``failCgroupV1: false`` because this machine
  has cgroup v1 only, ``cgroupfs`` driver (no systemd here), Webhook authentication and
  authorization as kubeadm sets them, logs and volumes under the folder.
- **CNI bridge** ``oncallm0`` (``10.244.0.0/24``) with host-local IPAM. The bridge's own address
  ``10.244.0.1`` is the node's InternalIP and where the API server listens, so pods reach the
  API server through the ``kubernetes`` Service like in any cluster.
- **kube-proxy** (iptables mode): ClusterIP Services.
- **CoreDNS** as a Deployment behind the ``kube-dns`` Service ``10.96.0.10``.

Nothing leaves the machine: the bridge plugin masquerades nothing, a guard chain drops every
forwarded packet that does not both enter and leave the bridge, and CoreDNS has no upstream.
The machine's sysctls that the node changes (forwarding, bridge netfilter, the kubelet's
kernel tunables) are put back by :meth:`LocalNode.stop`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from oncallm.controlplane import images

log = logging.getLogger(__name__)

NODE_NAME = "oncallm-node"
BRIDGE = "oncallm0"
POD_CIDR = "10.244.0.0/24"
#: The bridge's address: the node's InternalIP, the API server's and the kubelet's address.
NODE_IP = "10.244.0.1"
CLUSTER_DNS = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
CNI_BIN = Path("/usr/lib/cni")
#: The mangle-table chain that keeps forwarded traffic on the bridge.
GUARD_CHAIN = "ONCALLM-NODE-GUARD"
#: How long the node may take to report Ready (containerd, kubelet, first node status).
READY_TIMEOUT = 180.0

#: Host sysctls the node sets, put back on stop: forwarding for Service traffic between pods,
#: bridge netfilter so kube-proxy's DNAT sees it; the rest are the kubelet's kernel tunables.
_SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
}
_KUBELET_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)

#: ``LocalControlPlane._spawn``: start a part as a process whose log goes to ``<name>.log``.
Spawn = Callable[..., None]
NETNS = Path("/run/netns")
#: Names the folder of the node that holds this machine's bridge and address: one at a time.
OWNER = Path("/run/oncallm-node.owner")


def check_host() -> None:
    """Refuse early, naming the remedy, where a node cannot run."""
    if os.geteuid() != 0:
        raise RuntimeError("the local node runs containers: `up --node` needs root")
    missing = [
        tool
        for tool in ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip")
        if shutil.which(tool) is None
    ]
    if not (CNI_BIN / "bridge").exists():
        missing.append("containernetworking-plugins")
    if missing:
        raise RuntimeError(
            f"the local node needs {', '.join(missing)}: apt-get install containerd runc "
            "containernetworking-plugins iptables conntrack buildah mmdebstrap"
        )


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


class LocalNode:
    """The node's parts in ``<folder>/node``; processes are started through ``spawn``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.root = folder / "node"

    # -- paths ---------------------------------------------------------------------------
    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    def claim(self) -> None:
        """Take this machine's node slot, refusing while another folder's node still runs."""
        if OWNER.exists():
            other = Path(OWNER.read_text().strip())
            state = other / "state.json"
            if other != self.folder and state.exists():
                pids = json.loads(state.read_text()).get("pids", {})
                if any(_alive(pid) for pid in pids.values()):
                    raise RuntimeError(
                        f"another local node runs from {other} (one bridge {BRIDGE}, one address "
                        f"{NODE_IP} per machine): `oncallm controlplane down --dir {other}` first"
                    )
        OWNER.parent.mkdir(parents=True, exist_ok=True)
        OWNER.write_text(str(self.folder))

    def release(self) -> None:
        if OWNER.exists() and OWNER.read_text().strip() == str(self.folder):
            OWNER.unlink()

    def reset(self) -> None:
        """Forget a previous run's containers, volumes and IP allocations (the folder's etcd,
        and so its objects, stay): the new kubelet starts every pod afresh."""
        self.claim()
        self.release_mounts()
        for part in ("containerd", "kubelet", "cni", "pod-logs"):
            shutil.rmtree(self.root / part, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        before = sorted(p.name for p in NETNS.iterdir()) if NETNS.exists() else []
        (self.root / "netns-before.json").write_text(json.dumps(before))

    # -- network -------------------------------------------------------------------------
    def setup_network(self) -> None:
        """The bridge with the node's address, forwarding kept on it, and the CNI config.

        The bridge exists before the API server starts, since the API server listens on its
        address."""
        saved = self.root / "sysctls.json"
        self.root.mkdir(parents=True, exist_ok=True)
        if not saved.exists():
            names = [*_SYSCTLS, *_KUBELET_TUNABLES]
            before = {
                n: _sysctl_path(n).read_text().strip() for n in names if _sysctl_path(n).exists()
            }
            saved.write_text(json.dumps(before, indent=2))
        if _run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
            _run("ip", "link", "add", BRIDGE, "type", "bridge")
        addrs = _run("ip", "-o", "-4", "addr", "show", "dev", BRIDGE).stdout
        if f"{NODE_IP}/" not in addrs:
            _run("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        for name, value in _SYSCTLS.items():
            _sysctl_path(name).write_text(value)
        self._guard(install=True)
        net_d = self.root / "cni" / "net.d"
        net_d.mkdir(parents=True, exist_ok=True)
        conflist = {
            "cniVersion": "0.4.0",
            "name": "oncallm",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # nothing is to leave the machine; nothing needs NAT
                    "hairpinMode": True,  # a pod reaches itself through its own Service
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.root / "cni" / "ipam"),
                    },
                }
            ],
        }
        (net_d / "10-oncallm.conflist").write_text(json.dumps(conflist, indent=2))

    def _guard(self, *, install: bool) -> None:
        """Drop every forwarded packet that does not enter and leave the bridge: with forwarding
        on, a pod must not reach any address off this machine."""
        ipt = ("iptables", "-w", "-t", "mangle")
        present = _run(*ipt, "-C", "FORWARD", "-j", GUARD_CHAIN, check=False).returncode == 0
        if install:
            _run(*ipt, "-N", GUARD_CHAIN, check=False)
            _run(*ipt, "-F", GUARD_CHAIN)
            _run(*ipt, "-A", GUARD_CHAIN, "-i", BRIDGE, "-o", BRIDGE, "-j", "RETURN")
            _run(*ipt, "-A", GUARD_CHAIN, "-j", "DROP")
            if not present:
                _run(*ipt, "-I", "FORWARD", "1", "-j", GUARD_CHAIN)
        else:
            if present:
                _run(*ipt, "-D", "FORWARD", "-j", GUARD_CHAIN, check=False)
            _run(*ipt, "-F", GUARD_CHAIN, check=False)
            _run(*ipt, "-X", GUARD_CHAIN, check=False)

    def teardown_network(self) -> None:
        _run("ip", "link", "del", BRIDGE, check=False)
        self._guard(install=False)
        saved = self.root / "sysctls.json"
        if saved.exists():
            for name, value in json.loads(saved.read_text()).items():
                try:
                    _sysctl_path(name).write_text(value)
                except OSError as err:
                    log.warning("could not restore %s=%s: %s", name, value, err)
            saved.unlink()

    # -- containerd ----------------------------------------------------------------------
    def containerd_config(self) -> Path:
        base = self.root / "containerd"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""\
version = 2
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{base / "containerd.sock.ttrpc"}"

[{cri}]
  sandbox_image = "{images.PAUSE}"
  enable_selinux = false
  # The kubelet asks for negative OOM score adjustments (-998 for every pod sandbox), which
  # need CAP_SYS_RESOURCE; this machine's root lacks it, and runc fails with "failed to
  # update /proc/self/oom_score_adj: Permission denied". Clamp them at containerd's own.
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.root / "cni" / "net.d"}"
  [{cri}.registry]
    config_path = "{base / "certs.d"}"
"""
        path = base / "config.toml"
        base.mkdir(parents=True, exist_ok=True)
        (base / "certs.d").mkdir(exist_ok=True)
        path.write_text(config)
        return path

    def start_containerd(self, spawn: Spawn) -> None:
        config = self.containerd_config()
        spawn(
            "containerd",
            [shutil.which("containerd") or "containerd", f"--config={config}", "--log-level=warn"],
            own_binary=False,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.containerd_socket.exists():
                if self.ctr("version", check=False).returncode == 0:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"containerd did not answer on {self.containerd_socket}")

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(
            "ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io", *args, check=check
        )

    def import_image(self, image: images.BuiltImage) -> None:
        """Load a built image into containerd's ``k8s.io`` namespace (the CRI's)."""
        # --no-unpack is not used: the kubelet would otherwise unpack on first use.
        self.ctr("images", "import", str(image.archive))

    # -- kubelet -------------------------------------------------------------------------
    def kubelet_config(self, ca: Path, cert: Path, key: Path, port: int) -> Path:
        resolv = self.root / "resolv.conf"
        # Pods with dnsPolicy Default (CoreDNS itself) get no upstream: nothing leaves.
        resolv.write_text(f"nameserver {NODE_IP}\noptions ndots:1\n")
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This machine has cgroup v1 only; Kubernetes deprecates it but still runs on it.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": NODE_IP,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 0,
            "tlsCertFile": str(cert),
            "tlsPrivateKeyFile": str(key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(ca)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDNS": [CLUSTER_DNS],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": str(resolv),
            "podLogsDir": str(self.pod_logs),
            "failSwapOn": False,
            "rotateCertificates": False,
            "serializeImagePulls": False,
            # The defaults evict at 10-15 % free disk; a shared development disk may be fuller
            # than a node's, and evictions here would be noise, not a planted failure.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "2%",
                "imagefs.available": "2%",
                "nodefs.inodesFree": "2%",
            },
            "imageGCHighThresholdPercent": 99,
            "imageGCLowThresholdPercent": 98,
            "nodeStatusUpdateFrequency": "5s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "shutdownGracePeriod": "0s",
            "containerLogMaxSize": "10Mi",
            "containerLogMaxFiles": 3,
        }
        path = self.root / "kubelet-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start_kubelet(self, spawn: Spawn, config: Path, kubeconfig: Path) -> None:
        spawn(
            "kubelet",
            [
                "kubelet",
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.root / 'kubelet'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )

    # -- kube-proxy ----------------------------------------------------------------------
    def start_kube_proxy(self, spawn: Spawn, kubeconfig: Path, metrics_port: int) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP,
            "metricsBindAddress": f"127.0.0.1:{metrics_port}",
            "healthzBindAddress": "",
            # Leave the machine's conntrack table sizes and timeouts as they are.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "nodePortAddresses": [f"{NODE_IP}/32"],
        }
        path = self.root / "kube-proxy-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        spawn("kube-proxy", ["kube-proxy", f"--config={path}", "--v=1"])

    def cleanup_kube_proxy(self, binary: str) -> None:
        """Remove kube-proxy's iptables rules (``kube-proxy --cleanup``)."""
        _run(binary, "kube-proxy", "--cleanup", check=False)

    # -- stop ----------------------------------------------------------------------------
    def stop_containers(self) -> None:
        """Kill every container task and the shims (they outlive containerd by design)."""
        if not self.containerd_socket.exists():
            return
        tasks = self.ctr("tasks", "ls", "--quiet", check=False).stdout.split()
        for task in tasks:
            self.ctr("tasks", "delete", "--force", task, check=False)

    def release_mounts(self) -> None:
        """Unmount what the kubelet and containerd mounted under the folder, deepest first,
        and the pods' network namespaces, so the folder can be removed or reused."""
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(str(self.root) + "/"):
                mounts.append(point)
        for point in sorted(mounts, key=len, reverse=True):
            _run("umount", "-l", point, check=False)
        self._release_netns()

    def _release_netns(self) -> None:
        """The pods' network namespaces (``/run/netns/cni-*``) this node's containerd made;
        a sandbox killed without a CNI DEL leaves its namespace bound there."""
        listed = self.root / "netns-before.json"
        if not listed.exists() or not NETNS.exists():
            return
        before = set(json.loads(listed.read_text()))
        for path in NETNS.iterdir():
            if path.name.startswith("cni-") and path.name not in before:
                _run("umount", str(path), check=False)
                path.unlink(missing_ok=True)

    def stop(self, binary: str) -> None:
        self.cleanup_kube_proxy(binary)
        self.release_mounts()
        self.teardown_network()
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
