"""Rules about why a container does not start or does not stay up.

Scores (see docs/rules.md): a message that names the fault outright (``secret "x" not
found``, ``OOMKilled``, ``ErrImagePull``) scores 0.9+; an application's own words in its log
(a config parse error, a traceback) score lower, because a deeper cause found by another rule
(a dependency without endpoints, a DNS failure) explains the traceback better.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

from oncallm.analysis import commands as kc
from oncallm.analysis.evidence import (
    ALERT_ID,
    EvidenceIndex,
    container_id,
    is_error_line,
    logged_as_info,
    metric_id,
    missing_id,
    revision_id,
)
from oncallm.analysis.rules.base import (
    Finding,
    Hit,
    Link,
    RuleSettings,
    cite_hits,
    containers,
    controller,
    crashed_container,
    double_quantity,
    events,
    exit_code,
    grep,
    injected_sizing,
    log_of,
    loopback_binding,
    namespace,
    pod_cites,
    pod_commands,
    quote_line,
    stale_termination,
    target_pod,
    workload_state,
)
from oncallm.gathering.sources.custom_resources import certificate_id, external_secret_id
from oncallm.gathering.sources.dns import NAME_RESOLUTION_FAILURE
from oncallm.gathering.sources.mesh import (
    ROOT_NAMESPACE,
    effective_mode,
    has_istio_sidecar,
    peer_authentication_id,
)
from oncallm.gathering.sources.metrics import STORE_FULL
from oncallm.gathering.sources.namespace_limits import limit_range_id
from oncallm.gathering.sources.pull_credentials import (
    pull_credentials_id,
    pull_secret_id,
    refresher_id,
)
from oncallm.gathering.sources.retention import FILLING_ALERTS, config_id
from oncallm.models.analysis import Category, parse_rfc3339
from oncallm.models.evidence import (
    CertificateSnapshot,
    ContainerSnapshot,
    Context,
    EventSnapshot,
    LogSnapshot,
    PeerAuthenticationSnapshot,
    PodSnapshot,
    PullSecretSnapshot,
)
from oncallm.models.quantity import parse_quantity

# --- missing Secret / ConfigMap ---------------------------------------------------------------

_MISSING = re.compile(
    r"(?P<kind>secret|configmap)s?\s+\\?\"(?P<name>[\w.-]+)\\?\"\s+not\s+found"
    r"|couldn't find key (?P<key>\S+) in (?P<kind2>Secret|ConfigMap)"
    r" (?:[\w.-]+/)?(?P<name2>[\w.-]+)"
    # a volume's items name a key the object lacks: the kubelet names the volume and the key
    r"|volume \\?\"(?P<volume>[\w.-]+)\\?\"\s*:\s*(?P<kind3>secret|configmap) references "
    r"non-existent (?:config|secret) key:?\s*(?P<key3>[\w.-]+)",
    re.IGNORECASE,
)


def missing_secret_or_configmap(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """CreateContainerConfigError or FailedMount naming a Secret/ConfigMap that is not there."""
    found: dict[tuple[str, str], str] = {}  # (kind, name) -> key or ""
    cites: list[str] = []
    subject: tuple[PodSnapshot, ContainerSnapshot | None] | None = None
    for pod, c in containers(ctx):
        for text in (c.message, c.last_message):
            m = _MISSING.search(text or "")
            if m and c.state == "waiting":
                found.setdefault(_kind_name(m, pod), m.group("key") or m.group("key3") or "")
                cites.append(container_id(pod.name, c.name))
                subject = subject or (pod, c)
    for e in events(ctx, reasons=("FailedMount", "Failed", "FailedCreate"), pattern=_MISSING):
        m = _MISSING.search(e.message)
        assert m is not None
        mounting = next((p for p in ctx.pods if p.name == e.object_name), None)
        found.setdefault(_kind_name(m, mounting), m.group("key") or m.group("key3") or "")
        cites.append(ev.event(e) or "")
    for name in ctx.missing_objects:
        # gathering writes "ConfigMap orders/api-config"; a bare name is accepted too
        kind, _sep, rest = name.partition(" ") if " " in name else ("", "", name)
        short = rest.rpartition("/")[2]
        if kind and kind not in ("ConfigMap", "Secret"):
            continue
        if found and not any(short == n for _, n in found):
            continue
        kind = _title(kind or "ConfigMap")
        if not found and not _holds_back(ctx, ev, kind, short):
            continue
        found.setdefault((kind, short), "")
        cites.append(missing_id(name))
    if not found:
        return (
            _optional_key_missing(ctx, ev)
            or _mounted_key_missing(ctx, ev)
            or _sub_path_key_missing(ctx, ev)
        )
    if subject is None:
        mounting = next(
            (p for p in ctx.pods if any(e.object_name == p.name for e in ctx.events)),
            ctx.pods[0] if ctx.pods else None,
        )
        subject = (mounting, None) if mounting else None
    ns = namespace(ctx)
    (kind, name), key = next(iter(found.items()))
    what = f'{kind} "{name}"' + (f" (key {key})" if key else "")
    where = f"pod {subject[0].name}" if subject else ctx.target.display
    reason = (
        f"container {subject[1].name} is stuck in {subject[1].reason}"
        if subject and subject[1]
        else "its volume cannot be mounted"
    )
    absent_file = _file_of_missing_volume(ctx, ev, kind, name)
    if absent_file is not None:
        # the pod started (an optional volume), and the program fails on the empty mount
        hit, crashed_c = absent_file
        reason = (
            f"container {crashed_c.name} starts with the volume empty (it is optional) and "
            f"fails: {quote_line(hit.line, 200)}"
        )
        cites.extend(cite_hits([hit]))
    cmds = [f"kubectl -n {ns} get {kind.lower()} {name}"]
    if subject:
        cmds += pod_commands(ctx, subject[0], None)
        cmds.append(kc.events_for(ns, subject[0].name))
    others = [f'{k} "{n}"' for k, n in list(found)[1:]]
    elsewhere, copy_it = _issued_elsewhere(ctx, kind, name, ns)
    lookalike = (
        elsewhere
        or _lookalike_certificate(ctx, kind, name, ns)
        or _renderer_failing(ctx, kind, name, ns)
    )
    return Finding(
        Category.MISSING_SECRET_OR_CONFIGMAP,
        0.95,
        summary=f"{where} cannot start: {what} does not exist in namespace {ns}.",
        root_cause=(
            f"{what} referenced by {where} does not exist in namespace {ns}"
            + (f" (nor {', '.join(others)})" if others else "")
            + f", so {reason}"
            + ("" if absent_file else " and never runs")
            + (f"; {lookalike}" if lookalike else "")
            + "."
        ),
        evidence=ev.cite(
            *cites,
            *(pod_cites(ev, subject[0], subject[1]) if subject else []),
            *(external_secret_id(e.name) for e in ctx.external_secrets if e.target == name),
            *(
                certificate_id(c.name)
                for c in ctx.certificates
                if elsewhere and c.secret_name == name
            ),
        ),
        impact=f"{workload_state(ctx)}; new pods of it cannot start until {what} exists.",
        immediate_actions=[
            *([copy_it] if copy_it else []),
            f"Create {what} in namespace {ns} (or restore it from your secret store / GitOps "
            "repository); the kubelet retries on its own and the pod starts within a minute.",
            f"If the name is wrong, fix the reference in the pod template of "
            f"{_workload_name(ctx)} and roll out again.",
        ],
        recommendations=[
            "Deploy Secrets and ConfigMaps with the workload (same Helm release / kustomization) "
            "so one never ships without the other.",
            "Use External Secrets or a pre-deploy check that every referenced Secret exists.",
        ],
        commands=cmds,
    )


#: A program failing to open a file that is not there.
_NO_FILE = re.compile(
    r"no such file or directory|ENOENT|FileNotFoundError|NoSuchFileException|does not exist"
    r"|not found|cannot find|could not find|cannot open|can't open",
    re.IGNORECASE,
)


def _holds_back(ctx: Context, ev: EvidenceIndex, kind: str, name: str) -> bool:
    """Whether an object gathering found missing (no kubelet complaint names it) explains the
    pods: a pod on a node that requires it has a container that never started, or the pod
    starts without it (an optional reference) and its program fails on the empty mount. A pod
    that runs started with the object (it was deleted since), and one not scheduled is held by
    the scheduler first: neither is stopped by the missing object."""
    ref = f"{kind} {name}"
    for pod in ctx.pods:
        if ref in pod.optional_refs:
            if _file_of_missing_volume(ctx, ev, kind, name) is not None:
                return True
            continue
        referenced = name in pod.config_maps if kind == "ConfigMap" else name in pod.secrets
        if referenced and pod.node_name and any(c.state == "waiting" for c in pod.containers):
            return True
    return False


def _file_of_missing_volume(
    ctx: Context, ev: EvidenceIndex, kind: str, name: str
) -> tuple[Hit, ContainerSnapshot] | None:
    """The crashed program's error on a file under the mount of the missing object's volume."""
    crashed = crashed_container(ctx)
    if crashed is None:
        return None
    pod, c = crashed
    for path, volume in c.mounts.items():
        if pod.volume_sources.get(volume) != f"{kind} {name}" or path in ("", "/"):
            continue
        wanted = re.compile(rf"{re.escape(path.rstrip('/'))}/[\w.-]+")
        for h in grep(ctx, ev, wanted, pods=[pod.name]):
            if h.log.container == c.name and _NO_FILE.search(h.line):
                return h, c
    return None


#: The runtime refusing a subPath mount at container start (runc: ``error mounting
#: ".../volume-subpaths/<volume>/<container>/<n>"``, ``not a directory``).
_SUB_PATH_MOUNT = re.compile(r"volume-subpaths/|subPath|not a directory", re.I)


def _sub_path_key_missing(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    """A container mounts one key of a ConfigMap by ``subPath`` and the ConfigMap lacks that
    key (renamed by a chart upgrade): the kubelet makes the missing subPath an empty directory,
    runc cannot mount a directory onto the image's file, and the container never starts
    (StartError, exit 128). The kubelet names no key, so the ConfigMap's keys prove it."""
    for pod, c in containers(ctx):
        said = [c.message, c.last_message] + [
            e.message for e in events(ctx, reasons=("Failed",)) if e.object_name == pod.name
        ]
        if not any(_SUB_PATH_MOUNT.search(text or "") for text in said):
            continue
        for key, name in c.config_sub_paths.items():
            if f"ConfigMap {pod.namespace}/{name} key {key}" not in ctx.missing_keys:
                continue
            failed = next(
                (e for e in events(ctx, reasons=("Failed",), pattern=_SUB_PATH_MOUNT)
                 if e.object_name == pod.name),
                None,
            )  # fmt: skip
            refusal = c.last_message or c.message or (failed.message if failed else "")
            return Finding(
                Category.MISSING_SECRET_OR_CONFIGMAP,
                0.9,
                summary=(
                    f"Container {c.name} of pod {pod.name} mounts key {key} of ConfigMap "
                    f"{name} by subPath, and the ConfigMap has no such key."
                ),
                root_cause=(
                    f"Container {c.name} of pod {pod.name} mounts subPath {key} of ConfigMap "
                    f"{pod.namespace}/{name}, which has no key {key}: the kubelet creates the "
                    "missing subPath as an empty directory and the runtime cannot mount it "
                    "over the image's file, so the container never starts "
                    f"({quote_line(refusal, 160)})."
                ),
                evidence=ev.cite(*pod_cites(ev, pod, c), ev.event(failed) if failed else None),
                impact=f"{workload_state(ctx)}; no pod with this template starts.",
                immediate_actions=[
                    f"Add key {key} back to ConfigMap {name}, or change the subPath of "
                    f"container {c.name} to the key the ConfigMap now has (kubectl get "
                    f"configmap {name} -o yaml lists them).",
                ],
                recommendations=[
                    "Mount whole ConfigMap volumes, or render subPath keys from the same chart "
                    "values as the ConfigMap, so a renamed key cannot leave a mount behind.",
                ],
                commands=[
                    f"kubectl -n {pod.namespace} get configmap {name} -o yaml",
                    *pod_commands(ctx, pod, c),
                ],
            )
    return None


def _mounted_key_missing(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    """The crashed program cannot open a file under the mount of a Secret or ConfigMap
    volume: each key of the object is a file there, so the key it wants is not in the object
    (renamed, or never added). The kubelet mounts the volume without complaint, so only the
    program's error shows it."""
    crashed = crashed_container(ctx)
    if crashed is None:
        return None
    pod, c = crashed
    for path, volume in sorted(c.mounts.items(), key=lambda kv: -len(kv[0])):
        source = pod.volume_sources.get(volume, "")
        kind, _, name = source.partition(" ")
        if kind not in ("Secret", "ConfigMap") or path in ("/", ""):
            continue
        wanted = re.compile(rf"{re.escape(path.rstrip('/'))}/([\w.-]+)")
        for h in grep(ctx, ev, wanted, pods=[pod.name]):
            if h.log.container != c.name or not _NO_FILE.search(h.line):
                continue
            if BAD_CONFIG_WORDING.search(h.line):
                # the file was read and its parser refused a field in it ("field x not found
                # in type config.plain"): the content is wrong, the key is there
                continue
            key = h.match.group(1)
            issued = _certificate_keys_fixed(ctx, pod, kind, name, key)
            if issued is not None:
                return _config_names_wrong_tls_file(ctx, ev, pod, c, h, path, name, key, issued)
            return Finding(
                Category.MISSING_SECRET_OR_CONFIGMAP,
                0.88,
                summary=(
                    f"{c.name} in {pod.name} cannot read {path}/{key}: {kind} {name} mounted "
                    f"there has no key {key}."
                ),
                root_cause=(
                    f"Container {c.name} of pod {pod.name} mounts {kind} {pod.namespace}/{name} "
                    f"(volume {volume}) at {path}, where each key of it is a file, and the "
                    f"program fails because {path}/{key} is not there: {quote_line(h.line)}. "
                    f"{kind} {name} has no key {key} (renamed or never added); the kubelet "
                    "mounts the volume without complaint."
                ),
                evidence=ev.cite(*pod_cites(ev, pod, c), *cite_hits([h])),
                impact=f"{workload_state(ctx)}; it crash-loops until the key exists.",
                immediate_actions=[
                    f"Add key {key} to {kind} {name} (or point the program at the key's new "
                    "name), then restart the pods.",
                ],
                recommendations=[
                    "List the keys a program needs in the volume's items: a missing key then "
                    "fails the mount with an event that names it.",
                ],
                commands=[
                    f"kubectl -n {pod.namespace} describe {kind.lower()} {name}",
                    *pod_commands(ctx, pod, c),
                ],
            )
    return None


#: The keys cert-manager writes into a Certificate's Secret (its additionalOutputFormats
#: add tls-combined.pem and key.der; its keystores keystore.jks/.p12 and truststore.*).
_CERT_MANAGER_KEYS = (
    "tls.crt", "tls.key", "ca.crt", "tls-combined.pem", "key.der",
    "keystore.jks", "truststore.jks", "keystore.p12", "truststore.p12",
)  # fmt: skip


def _certificate_keys_fixed(
    ctx: Context, pod: PodSnapshot, kind: str, name: str, key: str
) -> CertificateSnapshot | None:
    """The cert-manager Certificate that writes Secret ``name``, when the file the program
    wants is not one of the keys cert-manager ever writes: the Secret cannot gain that key
    (cert-manager owns it), so what names the file (the program's config) is wrong."""
    if kind != "Secret" or key in _CERT_MANAGER_KEYS:
        return None
    return next(
        (
            cert
            for cert in ctx.certificates
            if cert.exists and cert.secret_name == name and cert.namespace == pod.namespace
        ),
        None,
    )


def _config_names_wrong_tls_file(
    ctx: Context,
    ev: EvidenceIndex,
    pod: PodSnapshot,
    c: ContainerSnapshot,
    h: Hit,
    path: str,
    secret: str,
    key: str,
    cert: CertificateSnapshot,
) -> Finding:
    configs = [
        (mount, pod.volume_sources[vol].partition(" ")[2])
        for mount, vol in sorted(c.mounts.items())
        if pod.volume_sources.get(vol, "").startswith("ConfigMap ")
    ]
    named = ", ".join(f"ConfigMap {cm} at {mount}" for mount, cm in configs)
    return Finding(
        Category.BAD_CONFIG,
        0.9,
        summary=(
            f"{c.name} in {pod.name} is configured to read {path}/{key}, but Secret {secret} "
            f"mounted there is cert-manager's (Certificate {cert.name}) and holds tls.crt and "
            "tls.key, never " + key + "."
        ),
        root_cause=(
            f"Container {c.name} of pod {pod.name} fails because {path}/{key} does not exist: "
            f"{quote_line(h.line)}. Secret {pod.namespace}/{secret}, mounted at {path}, is "
            f"written by cert-manager Certificate {cert.name}, which names its keys tls.crt, "
            f"tls.key and ca.crt; it never has a key {key}. The program's configuration"
            + (f" ({named})" if named else "")
            + " names the wrong file."
        ),
        evidence=ev.cite(*pod_cites(ev, pod, c), *cite_hits([h]), certificate_id(cert.name)),
        impact=f"{workload_state(ctx)}; it crash-loops until the configuration names tls.key "
        "or tls.crt.",
        immediate_actions=[
            "Point the configuration"
            + (f" in {', '.join(f'ConfigMap {cm}' for _, cm in configs)}" if configs else "")
            + f" at {path}/tls.key or {path}/tls.crt instead of {key}, or map the key to that "
            f"name with the volume's items (key: tls.key, path: {key}); then roll out.",
        ],
        recommendations=[
            "Test the rendered configuration against the Secret's real keys in CI "
            "(nginx -t with the Certificate's Secret mounted).",
        ],
        commands=[
            f"kubectl -n {pod.namespace} get secret {secret} -o jsonpath='{{.data}}' | jq 'keys'",
            *(f"kubectl -n {pod.namespace} get configmap {cm} -o yaml" for _, cm in configs),
            *pod_commands(ctx, pod, c),
        ],
    )


def _renderer_failing(ctx: Context, kind: str, name: str, namespace: str) -> str:
    """The ExternalSecret meant to render the missing Secret, when it does not sync: the
    cause one step further (the store has no such key, the store refuses the credentials)."""
    if kind != "Secret":
        return ""
    es = next(
        (e for e in ctx.external_secrets if e.target == name and e.namespace == namespace), None
    )
    if es is None:
        return ""
    ready = es.conditions.get("Ready", ("", "", ""))
    if ready[0] == "True":
        return f"ExternalSecret {es.name} renders it and reports Ready: it may have just synced"
    return (
        f"ExternalSecret {es.namespace}/{es.name} that should render it"
        + (f" from {es.store}" if es.store else "")
        + (f" (store key {', '.join(es.remote_keys)})" if es.remote_keys else "")
        + " does not sync"
        + (f": {ready[1]}" if ready[1] else "")
        + (f" ({quote_line(es.last_error, 200)})" if es.last_error else "")
    )


def _issued_elsewhere(ctx: Context, kind: str, name: str, ns: str) -> tuple[str, str]:
    """A Certificate in another namespace issues the missing Secret: Secrets are namespaced,
    so it exists only there, and a mirroring controller (Reflector, kubernetes-replicator)
    copies it only into the namespaces its secretTemplate annotation lists. Returns the
    explanation and the action."""
    if kind != "Secret":
        return "", ""
    cert = next(
        (c for c in ctx.certificates if c.secret_name == name and c.namespace != ns and c.exists),
        None,
    )
    if cert is None:
        return "", ""
    text = (
        f"Secret {name} is issued by Certificate {cert.namespace}/{cert.name} in namespace "
        f"{cert.namespace}, and a Secret is only visible in its own namespace"
    )
    action = (
        f"Issue the certificate in namespace {ns} (a Certificate there), or copy Secret {name} "
        f"from namespace {cert.namespace}."
    )
    if cert.mirrored_by:
        listed = ", ".join(cert.mirrored_to[:6]) or "no namespace"
        covered = any(_names_namespace(pattern, ns) for pattern in cert.mirrored_to)
        text += (
            f"; {cert.mirrored_by} copies it only into the namespaces its secretTemplate "
            f"annotation {cert.mirror_annotation} lists ({listed})"
            + (
                f", and {ns} is not among them"
                if not covered
                else f"; {ns} is listed, yet no copy exists: check {cert.mirrored_by}'s log"
            )
        )
        if not covered:
            action = (
                f"Add {ns} to the annotation {cert.mirror_annotation} in the secretTemplate of "
                f"Certificate {cert.namespace}/{cert.name}; {cert.mirrored_by} then creates "
                "the copy and the kubelet mounts it within a minute."
            )
    return text, action


def _names_namespace(pattern: str, ns: str) -> bool:
    """A namespace entry of a mirroring annotation: a name, or a regular expression (Reflector
    takes ``team-.*``)."""
    if pattern in ("*", ns):
        return True
    try:
        return re.fullmatch(pattern, ns) is not None
    except re.error:
        return False


def _lookalike_certificate(ctx: Context, kind: str, name: str, ns: str) -> str:
    """A cert-manager Certificate of the namespace that writes a Secret of a similar name:
    the pod mounts the name the Certificate does not write."""
    if kind != "Secret":
        return ""
    best = max(
        (c for c in ctx.certificates if c.namespace == ns),
        key=lambda c: SequenceMatcher(None, c.secret_name, name).ratio(),
        default=None,
    )
    if best is None or best.secret_name == name:
        return ""
    if SequenceMatcher(None, best.secret_name, name).ratio() < 0.7:
        return ""
    return (
        f"Certificate {best.namespace}/{best.name} writes Secret {best.secret_name}, not {name}: "
        "the pod and the Certificate disagree on the name"
    )


def _optional_key_missing(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    """A crashing container takes an env var from a key its Secret or ConfigMap does not have,
    through an ``optional: true`` ref: the kubelet starts it with the variable unset, so the
    program fails on an empty value and says something confusing. The key is known missing
    from a ConfigMap that exists, or from the keys the Secret's ExternalSecret writes."""
    for pod, c in containers(ctx):
        if not (c.restart_count or exit_code(c) not in (None, 0)):
            continue
        for ref in c.key_refs:
            if not ref.optional:
                continue
            writer = ""
            if ref.kind == "ConfigMap":
                missing = f"key {ref.key}" in " ".join(
                    k for k in ctx.missing_keys if f"/{ref.name} key " in k
                )
            else:
                es = next(
                    (
                        e
                        for e in ctx.external_secrets
                        if e.target == ref.name and e.namespace == pod.namespace
                    ),
                    None,
                )
                missing = es is not None and es.keys is not None and ref.key not in es.keys
                if es is not None and es.keys is not None:
                    writer = (
                        f"; ExternalSecret {es.name} writes only {', '.join(es.keys) or 'no keys'}"
                    )
            # Secrets are never read: a Secret's key is known missing when the program's own
            # error names the variable an optional ref of it leaves unset
            named = _names_variable(ctx, ev, pod, c, ref.env)
            if not missing and named is None:
                continue
            crash = named or next(
                (
                    h
                    for h in grep(ctx, ev, _EXCEPTION_LINE, pods=[pod.name])
                    if h.log.container == c.name
                ),
                None,
            )
            if not missing:
                writer = "; the program's error names the variable, so the key (or the whole "
                writer += f"{ref.kind}) is missing or empty"
            return Finding(
                Category.MISSING_SECRET_OR_CONFIGMAP,
                0.9 if missing else 0.86,
                summary=(
                    f"{c.name} in {pod.name} starts with {ref.env} unset: {ref.kind} {ref.name} "
                    f"has no key {ref.key} (the ref is optional)."
                ),
                root_cause=(
                    f"Container {c.name} of pod {pod.name} takes {ref.env} from key {ref.key} of "
                    f"{ref.kind} {pod.namespace}/{ref.name} with optional: true, and the key is "
                    f"not there{writer}; the kubelet starts it with {ref.env} unset"
                    + (f", and it fails: {quote_line(crash.line, 160)}" if crash else "")
                    + "."
                ),
                evidence=ev.cite(
                    *pod_cites(ev, pod, c),
                    *(cite_hits([crash]) if crash else []),
                    *(
                        external_secret_id(e.name)
                        for e in ctx.external_secrets
                        if e.target == ref.name
                    ),
                ),
                impact=f"{workload_state(ctx)}; it crash-loops until the key exists.",
                immediate_actions=[
                    f"Add key {ref.key} to {ref.kind} {ref.name} (or point {ref.env} at the key "
                    "that exists), then restart the pods.",
                ],
                recommendations=[
                    "Avoid optional: true for settings the program cannot run without: a missing "
                    "key then fails the pod with CreateContainerConfigError, which names it.",
                ],
                commands=[
                    f"kubectl -n {pod.namespace} get {ref.kind.lower()} {ref.name} -o "
                    "jsonpath='{.data}'",
                    *pod_commands(ctx, pod, c),
                ],
            )
    return None


def _names_variable(
    ctx: Context, ev: EvidenceIndex, pod: PodSnapshot, c: ContainerSnapshot, env: str
) -> Hit | None:
    """An error line of the container that names the environment variable ``env`` as having
    no value. A line that finds fault with the value it has (invalid, cannot parse) proves the
    variable is set: the key is there and its value is wrong, which is a bad config."""
    if len(env) < 4:
        return None
    word = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(env)}(?![A-Za-z0-9_])")
    return next(
        (
            h
            for h in grep(ctx, ev, word, pods=[pod.name])
            if h.log.container == c.name
            and (is_error_line(h.line) or _CRASH.search(h.line) or _UNSET.search(h.line))
            and not _WRONG_VALUE.search(h.line)
        ),
        None,
    )


#: How programs say a setting has a value they refuse.
_WRONG_VALUE = re.compile(
    r"invalid|malformed|cannot parse|can't parse|could not parse|failed to parse|parse error"
    r"|unsupported|not a valid|bad value|illegal|out of range|unknown (?:value|option|mode)",
    re.IGNORECASE,
)


#: How programs say a setting has no value.
_UNSET = re.compile(
    r"not set|is empty|\bmissing\b|\brequired\b|must be (?:set|provided|defined)|undefined"
    r"|\bblank\b|no value",
    re.IGNORECASE,
)


def _kind_name(m: re.Match[str], pod: PodSnapshot | None = None) -> tuple[str, str]:
    kind = m.group("kind") or m.group("kind2") or m.group("kind3") or "object"
    name = m.group("name") or m.group("name2")
    if not name and m.group("volume"):
        # the mount error names the volume: the pod's spec says which object it is
        source = (pod.volume_sources if pod else {}).get(m.group("volume"), "")
        name = source.partition(" ")[2] or f"(of volume {m.group('volume')})"
    return _title(kind), name or "?"


def _title(kind: str) -> str:
    return {"secret": "Secret", "configmap": "ConfigMap"}.get(kind.lower(), kind)


def _workload_name(ctx: Context) -> str:
    w = controller(ctx)
    return f"{w.kind.lower()}/{w.name}" if w else "the workload"


# --- image pull -------------------------------------------------------------------------------

_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
_PULL_EVENT = re.compile(r"Failed to pull image|Back-off pulling image|ErrImagePull|InvalidImage")
_PULL_NOT_FOUND = re.compile(r"not found|manifest unknown|does not exist|no such manifest", re.I)
_PULL_AUTH = re.compile(r"unauthori[sz]ed|authentication required|denied|403 Forbidden", re.I)
_PULL_NET = re.compile(r"no such host|i/o timeout|connection refused|TLS handshake", re.I)
_PULL_RATE = re.compile(r"toomanyrequests|429 Too Many Requests|pull rate limit", re.I)
"""The registry throttles pulls (Docker Hub's anonymous limit): nothing is wrong with the image."""


_WRONG_ARCH = re.compile(r"exec format error|no match for platform in manifest", re.I)
"""The kernel refuses to execute the entrypoint: the image holds a binary for another CPU
architecture than the node's (an amd64-only image on arm64 nodes)."""


def _wrong_architecture(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    hits = grep(ctx, ev, _WRONG_ARCH)
    pulls = [e for e in events(ctx, pattern=_WRONG_ARCH) if e.object_kind == "Pod"]
    crashed = [
        (p, c)
        for p, c in containers(ctx)
        if _WRONG_ARCH.search(f"{c.message} {c.last_message}")
        or any(h.log.pod == p.name and h.log.container == c.name for h in hits)
        or any(e.object_name == p.name for e in pulls)
    ]
    if not crashed:
        return None
    pod, c = crashed[0]
    node = next((n for n in ctx.nodes if n.name == pod.node_name), None)
    arch = node.labels.get("kubernetes.io/arch", "") if node is not None else ""
    where = f"node {pod.node_name}" + (f" ({arch})" if arch else "")
    w = controller(ctx)
    cmds = pod_commands(ctx, pod, c)
    cmds.append("kubectl get nodes -L kubernetes.io/arch")
    if w is not None and w.kind != "Job":
        cmds.append(kc.rollout_undo(w.kind, w.namespace, w.name))
    return Finding(
        Category.IMAGE_PULL_ERROR,
        0.9,
        summary=(
            f"Image {c.image} cannot run on {where}: its binary is built for another CPU "
            "architecture (exec format error)."
        ),
        root_cause=(
            f"Container {c.name} of pod {pod.name} exits at once with 'exec format error': "
            f"image {c.image} holds no build for the architecture of {where}"
            + (f" ({arch})" if arch and arch not in where else "")
            + ", so the kernel cannot execute its entrypoint."
        ),
        evidence=ev.cite(
            *pod_cites(ev, pod, c), *cite_hits(hits, 2), *[ev.event(e) for e in pulls[:2]]
        ),
        impact=f"{workload_state(ctx)}; pods on nodes of that architecture never start.",
        immediate_actions=[
            "Publish a multi-architecture image (docker buildx --platform linux/amd64,linux/arm64) "
            "or pin the workload to nodes of the image's architecture with a nodeSelector on "
            "kubernetes.io/arch; roll back meanwhile.",
        ],
        recommendations=[
            "Check the image manifest's platforms in CI against the node pools' architectures.",
        ],
        commands=cmds,
    )


def image_pull_error(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """ErrImagePull / ImagePullBackOff: the image cannot be fetched, or cannot run here."""
    wrong_arch = _wrong_architecture(ctx, ev)
    if wrong_arch is not None:
        return wrong_arch
    stuck = [
        (p, c) for p, c in containers(ctx) if c.state == "waiting" and c.reason in _PULL_REASONS
    ]
    pull_events = events(ctx, reasons=("Failed", "BackOff", "InspectFailed"), pattern=_PULL_EVENT)
    if not stuck and not pull_events:
        return None
    pod, c = stuck[0] if stuck else (None, None)
    messages = " ".join([e.message for e in pull_events] + [c.message if c else ""])
    image = c.image if c else _image_in(messages)
    because: list[Link] = []
    if _PULL_RATE.search(messages):
        why = (
            "the registry rate-limits the pulls (toomanyrequests: too many pulls from this "
            "node's address without credentials)"
        )
        fix = (
            f"Pull {image} with credentials (an imagePullSecret for the registry) or from a "
            "mirror/pull-through cache, then delete the pods in ImagePullBackOff."
        )
    elif _PULL_NOT_FOUND.search(messages):
        why = "the tag or repository does not exist in the registry"
        fix = f"Point the workload at an image that exists (check the tag of {image})."
        moved = _moved_registry(image or "")
        if moved:
            old_host, new_host, since = moved
            why = (
                f"the tag does not exist in {old_host}, which is frozen ({since}): new tags "
                f"are published only to {new_host}"
            )
            fix = f"Pull {image} from {new_host} instead ({image.replace(old_host, new_host, 1)})."
    elif _PULL_AUTH.search(messages):
        why = "the registry refuses the credentials (imagePullSecrets missing or expired)"
        fix = "Add or renew the imagePullSecret the pod's service account uses for this registry."
        stale, because = _stale_credentials(ctx, pod)
        if stale:
            why = f"the registry refuses the credentials: {stale}"
            fix = (
                "Repair what refreshes the pull Secret (named in the root cause), run it once "
                "by hand to renew the Secret, then delete the pods stuck in ImagePullBackOff."
            )
    elif _PULL_NET.search(messages):
        why = "the node cannot reach the registry"
        fix = "Check the nodes' egress/proxy/DNS to the registry, or mirror the image."
    else:
        why = "the kubelet cannot pull it"
        fix = f"Read the pull error in the events and fix the reference {image}."
    detail = next((e.message for e in pull_events if "Failed to pull" in e.message), "")
    ns = pod.namespace if pod else namespace(ctx)
    cmds = pod_commands(ctx, pod, None) if pod else []
    w = controller(ctx)
    new_rev = _newest_revision_changed_image(ctx)
    if w is not None and w.kind != "Job":
        cmds.append(kc.rollout_history(w.kind, w.namespace, w.name))
        cmds.append(kc.rollout_undo(w.kind, w.namespace, w.name))
    refused = bool(_PULL_AUTH.search(messages)) and not _PULL_NOT_FOUND.search(messages)
    because = because if refused else []
    absent = _absent_pull_secret(ctx, pod) if refused else None
    if absent is not None:
        # the registry refuses an anonymous pull because the credentials are not there: the
        # Secret that does not exist is the deeper cause, the pull error its symptom
        return _missing_pull_secret(ctx, ev, absent, pod, c, image, detail, pull_events, cmds)
    return Finding(
        Category.IMAGE_PULL_ERROR,
        0.93,
        because=because,
        summary=(
            f"Image {image} cannot be pulled"
            + (f" for pod {pod.name}" if pod else "")
            + f": {why}."
        ),
        root_cause=(
            f"Container {c.name + ' of pod ' + pod.name if c and pod else ''} cannot start "
            f"because image {image} cannot be pulled ({c.reason if c else 'ErrImagePull'}): {why}"
            + (f" — {quote_line(detail)}" if detail else "")
            + (f"; it came with revision {new_rev}" if new_rev else "")
            + "."
        ),
        evidence=ev.cite(
            *(pod_cites(ev, pod, c) if pod else []),
            *[ev.event(e) for e in pull_events[:3]],
            *[eid for link in because for eid in link.evidence],
            revision_id(new_rev) if new_rev else None,
        ),
        impact=f"{workload_state(ctx)}; pods with the new image never start.",
        immediate_actions=[
            fix,
            "Roll back to the last working revision if this came with a deploy.",
        ],
        recommendations=[
            "Build, push and deploy by digest from one pipeline so a deploy never names an "
            "image that was not pushed.",
            "Alert on KubeContainerWaiting / ImagePullBackOff before the rollout deadline.",
        ],
        commands=[*cmds, f"kubectl -n {ns} get events --field-selector reason=Failed"],
    )


#: Registries that stopped receiving images, and where their images are published now: a
#: tag that is "not found" there after the freeze is one that was only ever pushed to the
#: new registry (the old one keeps serving the tags it had).
MOVED_REGISTRIES = (("k8s.gcr.io", "registry.k8s.io", "since April 2023"),)


def _moved_registry(image: str) -> tuple[str, str, str] | None:
    host = image.split("/", 1)[0] if "/" in image else ""
    return next((m for m in MOVED_REGISTRIES if host == m[0]), None)


def _absent_pull_secret(ctx: Context, pod: PodSnapshot | None) -> PullSecretSnapshot | None:
    """An imagePullSecret of the pod (or its ServiceAccount) the kubelet could not retrieve."""
    for creds in ctx.pull_credentials:
        if pod is not None and creds.pod != pod.name:
            continue
        for secret in creds.secrets:
            if secret.exists is False:
                return secret
    return None


def _missing_pull_secret(
    ctx: Context,
    ev: EvidenceIndex,
    secret: PullSecretSnapshot,
    pod: PodSnapshot | None,
    c: ContainerSnapshot | None,
    image: str,
    detail: str,
    pull_events: list[EventSnapshot],
    cmds: list[str],
) -> Finding:
    where = f"pod {pod.name}" if pod else ctx.target.display
    refresher = next(iter(secret.refreshers), None)
    renders = next(iter(secret.external_secrets), None)
    writer = (f"; CronJob {refresher.name} is meant to write it" if refresher else "") + (
        f"; ExternalSecret {renders} is meant to render it" if renders else ""
    )
    return Finding(
        Category.MISSING_SECRET_OR_CONFIGMAP,
        0.94,
        summary=(
            f"imagePullSecret {secret.name} of {where} does not exist, so the registry refuses "
            f"the pull of {image}."
        ),
        root_cause=(
            f"{where} pulls {image} with imagePullSecret {secret.name} (from the {secret.via}), "
            f"and Secret {secret.namespace}/{secret.name} does not exist (the kubelet: unable to "
            "retrieve it), so the pull goes without credentials and the registry refuses it"
            + (f" — {quote_line(detail)}" if detail else "")
            + writer
            + "."
        ),
        evidence=ev.cite(
            pull_secret_id(secret.name),
            *(pull_credentials_id(p.pod) for p in ctx.pull_credentials[:1]),
            *(pod_cites(ev, pod, c) if pod else []),
            *[ev.event(e) for e in pull_events[:2]],
            *(refresher_id(r.kind, r.name) for r in secret.refreshers[:1]),
            *(external_secret_id(n) for n in secret.external_secrets[:1]),
        ),
        impact=f"{workload_state(ctx)}; no pod that needs {image} can start.",
        immediate_actions=[
            f"Create the docker-registry Secret {secret.name} in namespace {secret.namespace} "
            "(or fix the name the pod / its ServiceAccount references), then delete the pods in "
            "ImagePullBackOff.",
        ],
        recommendations=[
            "Deploy pull Secrets with the workload or from one secret store, and alert on the "
            "kubelet's FailedToRetrieveImagePullSecret events.",
        ],
        commands=[
            f"kubectl -n {secret.namespace} get secret {secret.name}",
            *(
                [f"kubectl -n {pod.namespace} get serviceaccount {pod.service_account} -o yaml"]
                if pod and pod.service_account
                else []
            ),
            *cmds,
        ],
    )


def _stale_credentials(ctx: Context, pod: PodSnapshot | None) -> tuple[str, list[Link]]:
    """Why a pull Secret no longer works, one step past the 401/403: registry tokens (ECR's
    last 12 hours) live only as long as what refreshes them, so name the Secret and its
    refresher: a CronJob suspended or whose recent Jobs fail, an ExternalSecret not syncing,
    or nothing at all. A Secret the kubelet could not retrieve does not exist."""
    creds = next(
        (p for p in ctx.pull_credentials if pod is None or p.pod == pod.name),
        ctx.pull_credentials[0] if ctx.pull_credentials else None,
    )
    if creds is None or not creds.secrets:
        return "", []
    texts: list[str] = []
    ids: list[str] = [pull_credentials_id(creds.pod)]
    for secret in creds.secrets[:2]:
        ids.append(pull_secret_id(secret.name))
        if secret.exists is False:
            texts.append(f"pull Secret {secret.name} does not exist")
            continue
        broken = []
        for r in secret.refreshers:
            ids.append(refresher_id(r.kind, r.name))
            if r.suspended:
                broken.append(f"CronJob {r.name} that refreshes it is suspended")
            elif r.failed_jobs:
                last = f" (last success {r.last_success})" if r.last_success else ""
                broken.append(
                    f"CronJob {r.name} that refreshes it failed its last {r.failed_jobs} "
                    f"run(s){last}: {r.recent_jobs[0] if r.recent_jobs else ''}".rstrip(": ")
                )
        for name in secret.external_secrets:
            es = next((e for e in ctx.external_secrets if e.name == name), None)
            ids.append(external_secret_id(name))
            ready = es.conditions.get("Ready", ("", "", "")) if es else ("", "", "")
            if es is not None and ready[0] != "True":
                broken.append(
                    f"ExternalSecret {name} that renders it"
                    + (f" from {es.store}" if es and es.store else "")
                    + " is not syncing"
                    + (f" ({ready[1]}: {quote_line(ready[2], 140)})" if ready[2] else "")
                    + (f", last refreshed {es.refresh_time}" if es.refresh_time else "")
                    + (
                        f"; its last error: {quote_line(es.last_error, 200)}"
                        if es.last_error
                        else ""
                    )
                )
        if broken:
            texts.append(f"pull Secret {secret.name} is stale: " + "; ".join(broken))
        elif not secret.refreshers and not secret.external_secrets:
            texts.append(f"pull Secret {secret.name} has expired and nothing refreshes it")
    if not texts:
        return "", []
    text = "; ".join(texts)
    return text, [Link(summary=text[:590] + ".", evidence=ids, category=Category.IMAGE_PULL_ERROR)]


def _image_in(text: str) -> str:
    m = re.search(r'image "?([\w./:@-]+)"?', text)
    return m.group(1) if m else "(unknown image)"


def _newest_revision_changed_image(ctx: Context) -> str | None:
    w = ctx.workload
    if w is None or not w.revisions:
        return None
    newest = max(w.revisions, key=lambda r: r.revision or 0)
    if any("image" in change.lower() for change in newest.changes):
        return newest.name
    return None


# --- OOMKilled --------------------------------------------------------------------------------

_MEMORY_METRIC = re.compile(r"memory_working_set|memory_usage|working_set", re.I)


def _evicted(ctx: Context, pod: PodSnapshot, c: ContainerSnapshot) -> bool:
    """The kubelet evicted the pod (or lost its container on the way): its 137 is the
    eviction's kill, not the kernel's OOM killer."""
    return (
        pod.reason == "Evicted"
        or "ContainerStatusUnknown" in (c.reason, c.last_reason)
        or any(e.reason == "Evicted" and e.object_name == pod.name for e in ctx.events)
    )


def oom_killed(ctx: Context, ev: EvidenceIndex, settings: RuleSettings) -> Finding | None:
    """The kernel killed the container for exceeding its memory limit."""
    best: tuple[float, PodSnapshot, ContainerSnapshot] | None = None
    for pod, c in containers(ctx):
        if stale_termination(ctx, c):
            continue
        if "OOMKilled" in (c.reason, c.last_reason):
            score = 0.93
        elif (
            exit_code(c) == 137
            and c.limits.get("memory")
            and not _liveness_kills(ctx, pod)
            and not _evicted(ctx, pod, c)
            and not _measured_far_below(ctx, pod, c)
        ):
            score = 0.72
        else:
            continue
        if best is None or (score, c.restart_count) > (best[0], best[2].restart_count):
            best = (score, pod, c)
    if best is None:
        return None
    score, pod, c = best
    limit = c.limits.get("memory")
    usage = _memory_usage(ctx, settings, limit)
    if any(h.node == pod.node_name and h.oom_events for h in ctx.node_health) and not usage:
        # The node ran out of memory as a whole (SystemOOM): the kernel's global OOM killer
        # picks victims whatever their limit, so the node, not this container, is the cause.
        score = min(score, 0.6)
    if usage and score < 0.9:
        score = 0.85
    raised = double_quantity(limit)
    heap = _heap_over_limit(c, limit)
    w = controller(ctx)
    injected = injected_sizing(ctx, pod, c, "memory limit", raised)
    defaulted = limit_range_default(ctx, c, "memory", limit)
    cmds = [*pod_commands(ctx, pod, c), kc.top_pod(pod.namespace, pod.name)]
    if injected is not None:
        cmds += [injected.command] if injected.command else []
    elif w is not None and raised:
        cmds.append(
            kc.set_resources(w.kind, w.namespace, w.name, c.name, limits=f"memory={raised}")
        )
    if heap:
        usage = (heap, usage[1]) if usage else (heap, "")
    tmpfs = _tmpfs_mount(pod, c, limit)
    return Finding(
        Category.OOM_KILLED,
        score,
        summary=(
            f"Container {c.name} of {pod.name} is OOMKilled: it needs more memory than its "
            f"{limit or 'node'} limit."
        ),
        root_cause=(
            f"Container {c.name} of pod {pod.name} was killed by the kernel for running out of "
            f"memory (OOMKilled, exit code 137) {c.restart_count} times: it uses more than its "
            f"memory limit of {limit or '(none: the node ran out)'}"
            + (f"; {usage[0]}" if usage else "")
            + (injected.text if injected else "")
            + (defaulted.text if defaulted else "")
            + (f"; {tmpfs[0]}" if tmpfs else "")
            + "."
        ),
        evidence=ev.cite(
            *pod_cites(ev, pod, c),
            *(metric_id(usage[1]) for _ in [0] if usage and usage[1]),
            *(
                [limit_range_id(defaulted.limit_range)]
                if defaulted and defaulted.limit_range
                else []
            ),
            *[ev.event(e) for e in events(ctx, reasons=("OOMKilling", "BackOff"))[:2]],
        ),
        impact=f"{workload_state(ctx)}; every OOM kill drops in-flight requests and restarts.",
        immediate_actions=[
            *([tmpfs[1]] if tmpfs else []),
            injected.action
            if injected
            else defaulted.action
            if defaulted
            else f"Raise the memory limit of container {c.name}"
            + (f" (e.g. {limit} -> {raised})" if raised else "")
            + " to stop the kills.",
            "Check the memory graph of the last hours: a steady climb is a leak, a jump is load.",
        ],
        recommendations=[
            "Set requests to the observed working set and the limit with headroom; for JVM/Node "
            "runtimes size the heap from the limit (-XX:MaxRAMPercentage, --max-old-space-size).",
            "Profile the heap if usage grows without bound between restarts.",
        ],
        commands=cmds,
    )


#: A memory-backed emptyDir whose sizeLimit lets it take this share of the container's memory
#: limit or more can by itself push the container over: it is named in an OOM kill.
TMPFS_SHARE = 0.25


def _tmpfs_mount(
    pod: PodSnapshot, c: ContainerSnapshot, limit: str | None
) -> tuple[str, str] | None:
    """The container's mount of an emptyDir with ``medium: Memory``: files written to that
    tmpfs are charged to the container's memory cgroup, so a spool or cache there grows the
    memory the kernel counts against the limit. One without a sizeLimit, or with a sizeLimit
    large against the limit, first. (What it says, the action.)"""
    budget = parse_quantity(limit) if limit else None
    found: list[tuple[float, str, str, str]] = []
    for path, volume in c.mounts.items():
        if volume not in pod.memory_volumes:
            continue
        size = pod.memory_volumes[volume]
        room = parse_quantity(size) if size else None
        if budget and room is not None and room < TMPFS_SHARE * budget:
            continue
        found.append((-(room or float("inf")), volume, path, size))
    if not found:
        return None
    _, volume, path, size = min(found)
    bound = f"sizeLimit {size}" if size else "no sizeLimit"
    return (
        f"it mounts emptyDir volume {volume} at {path} with medium: Memory ({bound}): that "
        "tmpfs lives in RAM, and every file written there counts against the container's "
        f"memory limit{f' of {limit}' if limit else ''}",
        f"Move emptyDir {volume} back to disk (drop medium: Memory), or give it a sizeLimit "
        "well under the memory limit and raise the limit by as much, so files there cannot "
        "exhaust the container's memory.",
    )


@dataclass(frozen=True)
class Defaulted:
    text: str
    action: str
    limit_range: str | None


def limit_range_default(
    ctx: Context, c: ContainerSnapshot, resource: str, value: str | None
) -> Defaulted | None:
    """The container's limit was not in its pod template: the LimitRanger admission plugin
    set it from the namespace's LimitRange default, so the LimitRange, not the workload's
    author, chose it."""
    if f"{resource} limit" not in c.defaulted:
        return None
    lr = next(
        (r for r in ctx.limit_ranges if any(f"{resource}={value}" in x and "default " in x
                                            for x in r.limits)),
        next(iter(ctx.limit_ranges), None),
    )  # fmt: skip
    name = lr.name if lr else None
    return Defaulted(
        text=(
            f"; that limit is not in the pod template: the namespace's LimitRange "
            f"{name or '(default)'} set it as its default {resource} limit "
            "(kubernetes.io/limit-ranger)"
        ),
        action=(
            f"Give container {c.name} its own {resource} limit in the pod template (the "
            f"LimitRange {name or ''} default of {value} is too small for it), or raise the "
            "LimitRange's default."
        ),
        limit_range=name,
    )


_HEAP_FLAG = re.compile(r"(-Xmx|--max-old-space-size=|-XX:MaxHeapSize=)(\d+)([kKmMgG]?)")


def _heap_over_limit(c: ContainerSnapshot, limit: str | None) -> str | None:
    """A runtime heap configured at or above the memory limit (``-Xmx3g`` under ``2Gi``).

    The kernel counts the heap plus the runtime's own memory against the limit, so a heap
    sized to the limit or above it is killed as soon as it fills: the configuration, not a
    leak, is the cause."""
    lim = parse_quantity(limit)
    if not lim:
        return None
    for var, value in c.env.items():
        m = _HEAP_FLAG.search(value)
        if m is None:
            continue
        number, unit = int(m.group(2)), m.group(3).lower()
        if m.group(1) == "--max-old-space-size=":
            size = number * 1024**2  # Node.js: megabytes
        else:
            size = number * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]
        if size >= 0.9 * lim:
            return (
                f"its {var} sets the heap to {m.group(0)}, at or above the {limit} limit, so "
                "the runtime grows past the limit before it collects garbage"
            )
    return None


def _probe_failures(ctx: Context, pod: PodSnapshot) -> bool:
    """The kubelet reports liveness or startup probe failures of the pod."""
    return any(
        re.search(r"(?:liveness|startup) probe (?:failed|errored)", e.message, re.I)
        for e in events(ctx, reasons=("Unhealthy",))
        if e.object_name == pod.name
    )


def _liveness_kills(ctx: Context, pod: PodSnapshot) -> bool:
    return any(
        "liveness probe" in e.message.lower()
        for e in events(ctx, reasons=("Unhealthy", "Killing"))
        if e.object_name == pod.name
    )


#: A working set this far under the limit disproves an OOM kill that the kubelet did not
#: report as OOMKilled: an exit 137 then is a SIGKILL from elsewhere (a person, an agent).
MEMORY_FAR_BELOW = 0.5


def _measured_far_below(ctx: Context, pod: PodSnapshot, c: ContainerSnapshot) -> bool:
    """Prometheus measured the container's working set, and it stayed under half its limit."""
    lim = parse_quantity(c.limits.get("memory"))
    peaks = [
        v
        for m in ctx.metrics
        if m.name == "memory_working_set_bytes"
        for key, v in m.values.items()
        if f'pod="{pod.name}"' in key and f'container="{c.name}"' in key
    ]
    return bool(lim and peaks) and max(peaks) < MEMORY_FAR_BELOW * (lim or 0)


def _memory_usage(
    ctx: Context, settings: RuleSettings, limit: str | None
) -> tuple[str, str] | None:
    from oncallm.analysis.evidence import parse_quantity

    lim = parse_quantity(limit)
    for m in ctx.metrics:
        if not (_MEMORY_METRIC.search(m.name) or _MEMORY_METRIC.search(m.query)):
            continue
        if "limit" in m.name or "resource_limits" in m.query:
            continue  # the limit itself, not the use
        if not m.values:
            continue
        peak = max(m.values.values())
        if lim and peak >= settings.memory_near_limit_ratio * lim:
            return (f"its working set reached {peak / 1024**2:.0f}Mi of the {limit} limit", m.name)
        if not lim and 0 < peak <= 1.5:
            return (f"memory use reached {peak:.0%} of the limit", m.name)
    return None


# --- failing probes ---------------------------------------------------------------------------

#: The kubelet's Unhealthy wording: "<Kind> probe failed: <output>" when the probe ran and
#: answered badly, "<Kind> probe errored and resulted in unknown state: <error>" (older kubelets:
#: "<Kind> probe errored: <error>") when it could not run: an exec probe that timed out, an
#: httpGet whose named port does not exist (strconv.Atoi: parsing "http"). Both fail the probe.
_PROBE = re.compile(
    r"(Liveness|Readiness|Startup) probe "
    r"(?:failed|errored(?: and resulted in \w+ state)?):?\s*(.*)",
    re.I | re.S,
)
#: Probe errors of a container being stopped: the kubelet execs into it while it shuts down.
#: A symptom of the stop, never the cause of anything.
_PROBE_WHILE_STOPPING = re.compile(
    r"container is stopping|container not running|is not running", re.I
)


#: A probe that ran out of time: the kubelet's HTTP client, gRPC and exec timeouts.
_PROBE_TIMEOUT = re.compile(
    r"context deadline exceeded|Client\.Timeout|timed out|timeout|DeadlineExceeded", re.I
)
_THROTTLE_DESCRIPTION = re.compile(r"([0-9.]+)\s*% throttling", re.I)


def _throttled_share(ctx: Context, pod: PodSnapshot, c: ContainerSnapshot) -> tuple[float, str]:
    """The share of CFS periods the container was throttled in, and the metric that says so
    (or the CPUThrottlingHigh alert about it); (0, "") when nothing measured it."""
    for m in ctx.metrics:
        if "throttl" not in (m.name + m.query).lower():
            continue
        for key, value in m.values.items():
            if f'pod="{pod.name}"' in key and (
                f'container="{c.name}"' in key or 'container="' not in key
            ):
                return (value / 100 if value > 1 else value), metric_id(m.name)
    if ctx.alert.name == "CPUThrottlingHigh" and ctx.alert.labels.get("container") == c.name:
        pct = _THROTTLE_DESCRIPTION.search(ctx.alert.annotations.get("description", ""))
        if pct:
            return float(pct.group(1)) / 100, ALERT_ID
    return 0.0, ""


def _listens_on_loopback(
    ctx: Context,
    ev: EvidenceIndex,
    pod: PodSnapshot,
    c: ContainerSnapshot,
    kind: str,
    unhealthy: list[EventSnapshot],
    bound: tuple[str, str | None],
) -> Finding:
    said, cited = bound
    changed = _recent_change(ctx)
    return Finding(
        Category.BAD_CONFIG,
        0.86,
        summary=(
            f"Container {c.name} of pod {pod.name} listens on the loopback address only, so "
            f"its {kind.lower()} probe to the pod IP is refused."
        ),
        root_cause=(
            f"Container {c.name} of pod {pod.name} binds its server to the loopback address: "
            f"{said}. Nothing listens on the pod IP, so the kubelet's {kind.lower()} probe (and "
            "every client through a Service) is refused, though the program runs"
            + (f"; the pod runs {changed[1]}" if changed else "")
            + "."
        ),
        evidence=ev.cite(
            *[ev.event(e) for e in unhealthy[:2]],
            cited,
            *pod_cites(ev, pod, c),
            revision_id(changed[0]) if changed else None,
        ),
        impact=f"{workload_state(ctx)}; the new pods never receive traffic.",
        immediate_actions=[
            f"Bind container {c.name} to 0.0.0.0 (all addresses) instead of 127.0.0.1/localhost "
            "and roll out again.",
        ],
        recommendations=[
            "Keep development defaults (localhost binds) out of the production configuration; "
            "a readiness probe catches it, a canary catches it sooner.",
        ],
        commands=pod_commands(ctx, pod, c),
    )


#: A port name meant to stay local: an admin, debug or metrics interface.
_LOCAL_PORT_NAME = re.compile(r"admin|debug|mgmt|manage|metrics|stats|pprof", re.I)


def _probe_on_local_port(
    ctx: Context,
    ev: EvidenceIndex,
    pod: PodSnapshot,
    c: ContainerSnapshot,
    kind: str,
    unhealthy: list[EventSnapshot],
    bound: tuple[str, str | None],
    detail: str,
) -> Finding | None:
    """The probe dials a port the program binds to the loopback address on purpose (Envoy's
    admin interface on 127.0.0.1:9901), while it serves its traffic on the pod IP on another
    port it declares: the program is healthy, the probe points at a local-only interface. Told
    apart from a server bound wholly to loopback by that other port, and by a sibling pod of
    the same workload that probes differently (the probe changed) or a port named for a local
    interface (admin, debug, metrics)."""
    m = _PROBED_PORT.search(detail)
    if m is None:
        return None
    port = int(m.group(1))
    serving = {n: p for n, p in c.ports.items() if p != port}
    if not serving or port not in c.ports.values():
        return None
    probe = {"Liveness": c.liveness_probe, "Readiness": c.readiness_probe}.get(
        kind, c.startup_probe
    ) or ""
    name = next((n for n, p in c.ports.items() if p == port), "")
    sibling = next(
        (
            (other, oc)
            for other in ctx.pods
            if other.name != pod.name and other.owner_name == pod.owner_name and other.owner_name
            for oc in other.containers
            if oc.name == c.name
            and oc.ready
            and (
                {"Liveness": oc.liveness_probe, "Readiness": oc.readiness_probe}.get(
                    kind, oc.startup_probe
                )
                or ""
            )
            not in ("", probe)
        ),
        None,
    )
    if sibling is None and not _LOCAL_PORT_NAME.search(name):
        return None
    said, cited = bound
    ports = ", ".join(f"{n}={p}" for n, p in serving.items())
    before = ""
    if sibling is not None:
        other, oc = sibling
        old = {"Liveness": oc.liveness_probe, "Readiness": oc.readiness_probe}.get(
            kind, oc.startup_probe
        )
        before = f"; pod {other.name} of the same workload, still ready, probes '{old}'"
    return Finding(
        Category.FAILING_PROBE,
        0.87,
        summary=(
            f"The {kind.lower()} probe of {c.name} in {pod.name} dials port {port}"
            + (f" ({name})" if name else "")
            + ", which the program serves on the loopback address only."
        ),
        root_cause=(
            f"The {kind.lower()} probe ({probe}) of container {c.name} of pod {pod.name} dials "
            f"port {port}" + (f" ({name})" if name else "") + ", an interface the program "
            f"binds to the loopback address ({said}); the kubelet dials the pod IP and is "
            f"refused ({quote_line(unhealthy[0].message, 140)}), while the program serves its "
            f"traffic on {ports}" + before + ". The probe points at a local-only port."
        ),
        evidence=ev.cite(*[ev.event(e) for e in unhealthy[:2]], cited, *pod_cites(ev, pod, c)),
        impact=(
            f"{workload_state(ctx)}; "
            + (
                "healthy pods stay unready and get no traffic, and the rollout halts."
                if kind == "Readiness"
                else "the kubelet restarts healthy containers."
            )
        ),
        immediate_actions=[
            f"Point the {kind.lower()} probe of {c.name} at the serving port ({ports}) or a "
            "health endpoint on it, and roll out; binding the admin interface to all "
            "addresses instead would expose it.",
        ],
        recommendations=["Probe the port that serves traffic; keep admin interfaces local."],
        commands=[*pod_commands(ctx, pod, c), kc.events_for(pod.namespace, pod.name)],
    )


def _probe_port_undeclared(c: ContainerSnapshot, detail: str) -> int | None:
    """The port a refused probe dials when the running container declares ports and not that
    one: nothing listens there (the program moved or dropped the listener, the probe kept the
    old number), so the probe cannot pass however healthy the program is."""
    if "connection refused" not in detail.lower() or c.state != "running" or not c.ports:
        return None
    m = _PROBED_PORT.search(detail)
    if m is None or int(m.group(1)) in c.ports.values():
        return None
    return int(m.group(1))


def _probes_undeclared_port(
    ctx: Context,
    ev: EvidenceIndex,
    pod: PodSnapshot,
    c: ContainerSnapshot,
    kind: str,
    unhealthy: list[EventSnapshot],
    port: int,
) -> Finding:
    declared = ", ".join(f"{n}={p}" if n != str(p) else str(p) for n, p in c.ports.items())
    probe = {"Liveness": c.liveness_probe, "Readiness": c.readiness_probe}.get(
        kind, c.startup_probe
    ) or ""
    changed = _recent_change(ctx)
    changed = changed if changed and pod.owner_name == changed[0] else None
    return Finding(
        Category.FAILING_PROBE,
        0.84,
        summary=(
            f"The {kind.lower()} probe of container {c.name} of pod {pod.name} dials port "
            f"{port}, which the container does not declare ({declared}): every probe is refused."
        ),
        root_cause=(
            f"The {kind.lower()} probe"
            + (f" ({probe})" if probe else "")
            + f" of container {c.name} of pod {pod.name} is refused on port {port} "
            f"({quote_line(unhealthy[0].message, 160)}), a port the container does not declare "
            f"(it declares {declared}); the program runs and listens elsewhere, so the probe "
            "points at nothing"
            + (
                f"; the pod runs the new {changed[1]}: what it changed is the first suspect"
                if changed
                else ""
            )
            + "."
        ),
        evidence=ev.cite(
            *[ev.event(e) for e in unhealthy[:3]],
            *pod_cites(ev, pod, c),
            revision_id(changed[0]) if changed else None,
        ),
        impact=(
            f"{workload_state(ctx)}; "
            + (
                "the pods never become ready and get no traffic."
                if kind == "Readiness"
                else "the kubelet restarts healthy containers."
            )
        ),
        immediate_actions=[
            f"Point the {kind.lower()} probe of container {c.name} at the port the program "
            f"serves its health endpoint on (one of {declared}, by name), and roll out.",
        ],
        recommendations=[
            "Reference probe ports by the container port's name, so a port change moves the "
            "probe with it.",
        ],
        commands=[*pod_commands(ctx, pod, c), kc.events_for(pod.namespace, pod.name)],
    )


#: A server saying it has started and serves: Spring Boot's ``Started X in 21.9 seconds``,
#: Tomcat's and Jetty's ``started on port``, Quarkus' ``started in 12.3s. Listening on``, Node's,
#: Go's and Python's ``listening on``/``serving on``/``Uvicorn running on``, Redis' and
#: Postgres' ``ready to accept connections``, ASGI's ``Application startup complete``.
_SERVING = re.compile(
    r"""
    \bStarted\s+\S+\s+in\s+[\d.]+\s*s | \bstarted\s+in\s+[\d.]+\s*s
    | \bstarted\s+on\s+port | \blistening\s+(?:on|at)\b | \bserving\s+(?:on|at|http)
    | \brunning\s+on\s+https?:// | ready\s+to\s+accept\s+connections
    | application\s+startup\s+complete | \bserver\s+(?:is\s+)?(?:started|running|listening)
    """,
    re.IGNORECASE | re.VERBOSE,
)

#: A probe's timing as the pods source writes it: ``delay=45s ... period=10s failureThreshold=3``.
_PROBE_TIMING = re.compile(r"delay=(\d+)s\b.*?period=(\d+)s\b.*?failureThreshold=(\d+)")


@dataclass(frozen=True)
class _StillStarting:
    """A container the kubelet killed before it served: the line it was on, and the time the
    probe gave it (``budget`` seconds, None when the probe's timing is unknown)."""

    log: LogSnapshot
    lineno: int
    budget: int | None


def _killed_while_starting(
    ctx: Context, pod: PodSnapshot, c: ContainerSnapshot, kind: str, detail: str
) -> _StillStarting | None:
    """The liveness or startup probe kills ``c`` before it has started serving.

    Mechanism: the probe is refused (nothing listens on the probed port yet), the container
    was killed for it (exit 137/143, or no termination read), and its previous instance's log
    goes on with start-up steps (a schema migration, a cache warm-up, a cluster join) and never
    says it serves (:data:`_SERVING`), its last line not an error. The program is not failing:
    the probe's budget (initialDelaySeconds + periodSeconds * failureThreshold) is shorter than
    its start, so every restart begins the start again."""
    if kind == "Readiness" or "connection refused" not in detail.lower():
        return None
    if c.last_exit_code not in (None, 137, 143):
        return None
    log = log_of(ctx, pod.name, c.name, previous=True)
    if log is None:
        return None
    numbered = [(i, ln) for i, ln in enumerate(log.lines, 1) if ln.strip()]
    if len(numbered) < 2 or any(_SERVING.search(ln) for _, ln in numbered):
        return None
    lineno, last = numbered[-1]
    if is_error_line(last):
        return None
    probe = (c.liveness_probe if kind == "Liveness" else c.startup_probe) or ""
    timing = _PROBE_TIMING.search(probe)
    budget = int(timing.group(1)) + int(timing.group(2)) * int(timing.group(3)) if timing else None
    return _StillStarting(log, lineno, budget)


def _starved_probe(
    ctx: Context,
    ev: EvidenceIndex,
    settings: RuleSettings,
    pod: PodSnapshot,
    c: ContainerSnapshot,
    kind: str,
    unhealthy: list[EventSnapshot],
    detail: str,
) -> Finding | None:
    """A probe that times out while its container is throttled at its CPU limit: the
    program cannot answer in time because the kernel holds it back, so the probe is the
    symptom and the CPU limit the cause (raising the probe's timeout only hides it)."""
    if not _PROBE_TIMEOUT.search(detail):
        return None
    share, cited = _throttled_share(ctx, pod, c)
    if share < settings.cpu_throttling_ratio:
        return None
    limit = c.limits.get("cpu", "?")
    return Finding(
        Category.CPU_THROTTLING,
        0.84,
        summary=(
            f"The {kind.lower()} probe of container {c.name} of pod {pod.name} times out because "
            f"the container is CPU-throttled in {share:.0%} of its periods at its {limit} limit."
        ),
        root_cause=(
            f"Container {c.name} of pod {pod.name} is throttled by the kernel in {share:.0%} of "
            f"its CFS periods at its CPU limit of {limit}, so it answers its {kind.lower()} probe "
            f"too late ({quote_line(detail, 160)}); the probe is the symptom, the CPU limit the "
            "cause."
        ),
        evidence=ev.cite(cited, *[ev.event(e) for e in unhealthy[:2]], *pod_cites(ev, pod, c)),
        impact=f"{workload_state(ctx)}; requests time out while the container is throttled.",
        immediate_actions=[
            f"Raise the CPU limit of container {c.name} (or remove it and keep the request), "
            "then watch the throttling ratio and the probe failures drop.",
        ],
        recommendations=[
            "Keep probes cheap, and CPU limits well above the peak the service needs (or none).",
        ],
        commands=[kc.top_pod(pod.namespace, pod.name), *pod_commands(ctx, pod, c)],
    )


#: A probe the kubelet could not run at all: an exec probe whose command the image lacks.
#: Unlike a probe that ran and was answered badly, it proves the probe is broken.
_PROBE_CANNOT_RUN = re.compile(
    r"exec: \"?[^\s\"]+\"?: (?:stat [^:]+: )?no such file or directory|executable file not found"
    r"|exec format error",
    re.I,
)
_PROBED_PORT = re.compile(r"\d+\.\d+\.\d+\.\d+:(\d+)")


def _loopback_only(
    ctx: Context, ev: EvidenceIndex, pod: PodSnapshot, c: ContainerSnapshot, detail: str
) -> tuple[str, str | None] | None:
    """The program listens on the loopback address only (``--bind 127.0.0.1:8000``), so the
    kubelet's probe to the pod IP is refused: (what says so, its evidence id)."""
    if "connection refused" not in detail.lower():
        return None
    port = _PROBED_PORT.search(detail)
    if port is None:
        return None
    return loopback_binding(ctx, ev, pod, c, {int(port.group(1))})


def failing_probe(ctx: Context, ev: EvidenceIndex, settings: RuleSettings) -> Finding | None:
    """Unhealthy events: the kubelet's probe fails and it restarts (liveness) or unreadies."""
    unhealthy = [
        e
        for e in events(ctx, reasons=("Unhealthy",), pattern=_PROBE)
        if not _PROBE_WHILE_STOPPING.search(e.message)
    ]
    kills = events(
        ctx, reasons=("Killing",), pattern=re.compile(r"failed (liveness|startup) probe")
    )
    if not unhealthy:
        return None
    # The probe that restarts the container is the cause of the restarts, however many more
    # times its readiness probe failed beside it (a readiness probe of a container that is
    # killed and restarting fails all the while): liveness/startup first when the kubelet
    # killed for it, then the most repeated.
    # Among pods, the alerted one and those still failing first (a replica that recovered
    # says nothing about the one that did not), and the same answer whatever order the
    # events are listed in.
    killed_for = {e.object_name for e in kills}
    alerted = target_pod(ctx)
    by_name = {p.name: p for p in ctx.pods}

    def rank(e: EventSnapshot) -> tuple[bool, bool, bool, int, str]:
        p = by_name.get(e.object_name)
        return (
            p is not None and not _recovered(p),
            alerted is not None and e.object_name == alerted.name,
            e.object_name in killed_for and not e.message.lower().startswith("readiness"),
            e.count,
            e.object_name,
        )

    first = max(unhealthy, key=rank)
    m = _PROBE.search(first.message)
    assert m is not None
    kind = m.group(1).capitalize()
    detail = m.group(2).strip()
    pod = next((p for p in ctx.pods if p.name == first.object_name), None)
    c = _probed_container(pod, kind) if pod else None
    restarts = c.restart_count if c else 0
    if (
        pod is not None
        and _recovered(pod)
        and (kind == "Readiness" or not (restarts or kills) or _quiet_since_restart(unhealthy, c))
    ):
        # ready again, and never restarted for it, or no failure since the restart: the
        # failures were a passing state (a slow start under a startup probe, a blip that one
        # restart cleared), not a cause
        return None
    score = 0.8 if (kind != "Readiness" and (restarts or kills)) else 0.62
    if kind == "Readiness" and _APP_VERDICT.search(detail or first.message):
        # the app answered its own health check with a server error: the probe works and
        # reports the app's verdict; why the app says it is unhealthy is not proven here
        return _unready_by_its_own_verdict(ctx, ev, pod, c, first, detail)
    if pod is not None and c is not None:
        bound = _loopback_only(ctx, ev, pod, c, detail or first.message)
        if bound is not None:
            return _probe_on_local_port(
                ctx, ev, pod, c, kind, unhealthy, bound, detail or first.message
            ) or _listens_on_loopback(ctx, ev, pod, c, kind, unhealthy, bound)
    if pod is not None and c is not None:
        undeclared = _probe_port_undeclared(c, detail or first.message)
        if undeclared is not None:
            return _probes_undeclared_port(ctx, ev, pod, c, kind, unhealthy, undeclared)
    cannot_run = _PROBE_CANNOT_RUN.search(detail or first.message) is not None
    if cannot_run:
        score = max(score, 0.8)  # the probe itself is broken, whatever the app would answer
    if pod is not None and c is not None:
        starved = _starved_probe(
            ctx, ev, settings, pod, c, kind, unhealthy, detail or first.message
        )
        if starved is not None:
            return starved
    probe = ""
    if c is not None:
        probe = {"Liveness": c.liveness_probe, "Readiness": c.readiness_probe}.get(
            kind, c.startup_probe
        ) or ""
    where = f"container {c.name} of pod {pod.name}" if c and pod else first.object_name
    effect = (
        f"so the kubelet kills and restarts it ({restarts} restarts)"
        if kind != "Readiness"
        else "so it is taken out of its Services' endpoints"
    )
    strict = _strict_mtls_unrewritten(ctx, pod, detail or first.message) if pod else None
    if pod is not None and strict is not None:
        return _probe_refused_by_mtls(ctx, ev, pod, c, kind, unhealthy, kills, strict, effect)
    cmds = pod_commands(ctx, pod, c) if pod else []
    if pod is not None and c is not None:
        cmds.append(kc.events_for(pod.namespace, pod.name))
    # a probe that fails on the pods of a new revision: what the revision changed (a port,
    # a path, a start-up step) is why the unchanged probe no longer fits
    changed = _recent_change(ctx)
    newest = changed is not None and pod is not None and pod.owner_name == changed[0]
    starting = (
        _killed_while_starting(ctx, pod, c, kind, detail or first.message)
        if pod is not None and c is not None and not cannot_run
        else None
    )
    why = (
        "the kubelet cannot run the probe's command: the container's image does not "
        "have it (the image changed, the probe did not)"
        if cannot_run
        else "the application answers the probe too slowly or with an error"
    )
    actions = [
        f"Call the probe endpoint yourself from inside the pod to see how long and what it "
        f"answers; if the app is healthy but slow, raise timeoutSeconds/failureThreshold of "
        f"the {kind.lower()} probe.",
        "If the endpoint fails for real, read the application log around the failures.",
    ]
    if starting is not None and c is not None:
        given = f" within the {starting.budget} s the probe gives it" if starting.budget else ""
        why = (
            "it kills the container while it is still starting: nothing listens on the "
            "probed port yet, and its previous instance's log ends on a start-up step — "
            f"{quote_line(starting.log.lines[starting.lineno - 1])} — without ever saying it "
            f"serves; the start does not finish{given}, so every restart begins it again"
            + ("" if c.startup_probe else " (the container has no startupProbe)")
        )
        actions = [
            f"Give the start its time: add a startupProbe to container {c.name} (or raise the "
            f"{kind.lower()} probe's initialDelaySeconds/failureThreshold) so that it covers "
            "the slowest start; a long one-off step (a migration, a backfill) belongs in a Job "
            "or an init container, not in the serving container's start.",
            "Read the container's previous log to see how far each start gets before the kill.",
        ]
    return Finding(
        Category.FAILING_PROBE,
        score,
        summary=f"The {kind.lower()} probe of {where} fails ({first.count} times), {effect}.",
        root_cause=(
            f"The {kind.lower()} probe"
            + (f" ({probe})" if probe else "")
            + f" of {where} keeps failing — {quote_line(detail or first.message)} — {effect}; "
            + why
            + (
                f"; the pod runs the new {changed[1]}: what it changed is the first suspect"
                if newest and changed
                else ""
            )
            + "."
        ),
        evidence=ev.cite(
            *[ev.event(e) for e in unhealthy[:3]],
            *[ev.event(e) for e in kills[:1]],
            *(pod_cites(ev, pod, c) if pod else []),
            revision_id(changed[0]) if newest and changed else None,
            ev.line(starting.log, starting.lineno) if starting else None,
        ),
        impact=f"{workload_state(ctx)}; requests fail while pods restart or sit unready.",
        immediate_actions=actions,
        recommendations=[
            "Keep liveness probes cheap and free of dependency checks; use a startupProbe for "
            "slow starts and readiness for dependencies.",
        ],
        commands=cmds,
    )


#: A plaintext connection Envoy's inbound listener drops: under STRICT mTLS it finds no filter
#: chain for a client without a certificate and resets it.
_RESET = re.compile(
    r"connection reset by peer|EOF|server closed the connection|malformed HTTP", re.I
)
REWRITE_ANNOTATION = "sidecar.istio.io/rewriteAppHTTPProbers"


def _strict_mtls_unrewritten(
    ctx: Context, pod: PodSnapshot, detail: str
) -> PeerAuthenticationSnapshot | None:
    """The STRICT PeerAuthentication that resets the kubelet's plaintext probe of a pod with
    an Istio sidecar whose probe rewriting is turned off, or None."""
    if not has_istio_sidecar(pod) or pod.mesh.get(REWRITE_ANNOTATION, "").lower() != "false":
        return None
    if not _RESET.search(detail):
        return None
    policy = effective_mode(ctx, pod)
    return policy if policy is not None and policy.mode == "STRICT" else None


def _probe_refused_by_mtls(
    ctx: Context,
    ev: EvidenceIndex,
    pod: PodSnapshot,
    c: ContainerSnapshot | None,
    kind: str,
    unhealthy: list[EventSnapshot],
    kills: list[EventSnapshot],
    policy: PeerAuthenticationSnapshot,
    effect: str,
) -> Finding:
    where = f"container {c.name} of pod {pod.name}" if c else f"pod {pod.name}"
    scope = (
        "the whole mesh" if policy.namespace == ROOT_NAMESPACE else f"namespace {policy.namespace}"
    )
    return Finding(
        Category.FAILING_PROBE,
        0.9,
        summary=(
            f"The {kind.lower()} probe of {where} is reset by its Istio sidecar: STRICT mTLS "
            f"(PeerAuthentication {policy.namespace}/{policy.name}) with probe rewriting off "
            f'({REWRITE_ANNOTATION}: "false"), {effect}.'
        ),
        root_cause=(
            f"Pod {pod.name} runs an Istio sidecar and turns off Istio's probe rewriting "
            f'({REWRITE_ANNOTATION}: "false"), so the kubelet\'s plaintext {kind.lower()} '
            f"probe reaches the sidecar's inbound listener, and PeerAuthentication "
            f"{policy.namespace}/{policy.name} sets mTLS mode STRICT for {scope}"
            + (f" (created {policy.created_at})" if policy.created_at else "")
            + ": the sidecar accepts only mTLS and resets the probe's connection "
            f"({quote_line(unhealthy[0].message, 160)}), {effect}, while the application "
            "itself may be healthy."
        ),
        evidence=ev.cite(
            peer_authentication_id(policy.namespace, policy.name),
            *[ev.event(e) for e in unhealthy[:2]],
            *[ev.event(e) for e in kills[:1]],
            *pod_cites(ev, pod, c),
        ),
        impact=f"{workload_state(ctx)}; the pods restart or sit unready although they work.",
        immediate_actions=[
            f'Remove the annotation {REWRITE_ANNOTATION}: "false" from the pod template (or '
            'set it to "true"), so Istio rewrites the probes through its agent; the new pods '
            "pass them under STRICT mTLS.",
            f"Or exclude the probe port from mTLS (a portLevelMtls PERMISSIVE entry in "
            f"PeerAuthentication {policy.namespace}/{policy.name}) until the template is "
            "fixed.",
        ],
        recommendations=[
            "Roll out STRICT mTLS namespace by namespace after checking that no workload "
            "turns off probe rewriting.",
        ],
        commands=[
            f"kubectl -n {policy.namespace} get peerauthentication {policy.name} -o yaml",
            *pod_commands(ctx, pod, c),
            kc.events_for(pod.namespace, pod.name),
        ],
    )


#: A probe answered by the application with a server error (HTTP 5xx), as the kubelet words it.
_APP_VERDICT = re.compile(r"HTTP probe failed with statuscode: 5\d\d", re.I)


def _unready_by_its_own_verdict(
    ctx: Context,
    ev: EvidenceIndex,
    pod: PodSnapshot | None,
    c: ContainerSnapshot | None,
    first: EventSnapshot,
    detail: str,
) -> Finding:
    """A readiness probe the application answers with a 5xx: a link that says so, with no
    category of its own. The probe does its job; the reason behind the app's answer is a
    cause only another finding (its logs, a dependency) can prove."""
    where = f"container {c.name} of pod {pod.name}" if c and pod else first.object_name
    return Finding(
        Category.UNKNOWN,
        0.3,
        summary=(
            f"{where[0].upper() + where[1:]} answers its readiness probe with a server error "
            f"({quote_line(detail or first.message, 120)}, {first.count} times), so it is out "
            "of its Services' endpoints; nothing gathered says why the application reports "
            "itself unhealthy."
        ),
        root_cause=(
            f"The readiness probe of {where} gets a server error from the application "
            f"({quote_line(detail or first.message)}): the probe works, the application says "
            "it is not ready, and the evidence does not show why."
        ),
        evidence=ev.cite(ev.event(first), *(pod_cites(ev, pod, c) if pod else [])),
        immediate_actions=[
            "Call the readiness endpoint from inside the pod and read what it reports; read the "
            "application log around the first failure.",
        ],
        commands=[
            *(pod_commands(ctx, pod, c) if pod else []),
            *([kc.events_for(pod.namespace, pod.name)] if pod else []),
        ],
    )


def _quiet_since_restart(unhealthy: list[EventSnapshot], c: ContainerSnapshot | None) -> bool:
    """No probe failure was seen after the container's current start."""
    started = parse_rfc3339(c.started_at) if c is not None and c.started_at else None
    if started is None:
        return False
    seen = [parse_rfc3339(e.last_seen or e.first_seen or "") for e in unhealthy]
    return all(t is not None and t <= started for t in seen)


def _recovered(pod: PodSnapshot) -> bool:
    """The pod is Ready again and every container runs and is ready."""
    ready = pod.conditions.get("Ready", ("", "", ""))[0] == "True"
    return ready and all(c.ready and c.state == "running" for c in pod.containers if not c.init)


def _probed_container(pod: PodSnapshot, kind: str) -> ContainerSnapshot | None:
    for c in pod.containers:
        probe = {"Liveness": c.liveness_probe, "Readiness": c.readiness_probe}.get(
            kind, c.startup_probe
        )
        if probe:
            return c
    return next((c for c in pod.containers if not c.init), None)


# --- bad configuration ------------------------------------------------------------------------

BAD_CONFIG_WORDING = re.compile(
    r"unknown (?:(?:long |short )?flag|shorthand flag|option|field|setting|configuration key|key)"
    r"|flag provided but not defined"
    r"|invalid (?:value|argument|configuration|config|setting|option|duration|syntax)"
    r"|(?:failed|unable) to (?:parse|load|read|decode|unmarshal)"
    r" (?:the )?(?:config|configuration|settings)"
    r"|cannot (?:parse|load|decode|unmarshal) the (?:config|configuration)"
    # the OpenTelemetry Collector naming a component its build lacks (an exporter removed)
    r"|unknown type: \"[\w/]+\" for id"
    r"|error (?:parsing|loading|reading|decoding) (?:the )?(?:config|configuration|settings)"
    r"|(?:config|configuration)(?: file)? (?:error|is invalid|invalid|validation failed)"
    r"|yaml: (?:unmarshal|line \d+)|json: cannot unmarshal|toml: "
    r"|missing required (?:config|configuration|setting|option|environment variable|env)"
    r"|(?:environment variable|env var) \S+ (?:is )?(?:not set|required|missing)"
    r"|must be (?:one of|a valid|set|a positive)"
    r"|(?-i:KeyError: '[A-Z][A-Z0-9_]+')"  # an env var's name, never a data field's
    r"|ValidationError: \d+ validation error"
    # pydantic-settings failing to decode an env var as the field's type (a list, a dict)
    r"|SettingsError: error parsing value for field"
    # a parser rejecting a config file: PyYAML, json, toml, SnakeYAML, Jackson, Go's yaml
    r"|yaml\.(?:scanner|parser|constructor|composer)\.\w+Error|\b(?:Scanner|Parser)Error:"
    r"|JSONDecodeError|JsonParseException|MarkedYAMLException|TomlDecodeError"
    r"|found character .{1,8} that cannot start any token|mapping values are not allowed here"
    r"|did not find expected key|could not find expected ':'"
    # a configuration value of the wrong type: Spring's binder, Java's parsers, Go's flag/env
    r"|Failed to bind properties under|failed to convert java\.lang\.String to"
    r"|is not a valid (?:duration|number|integer|boolean|url|value)"
    r"|NumberFormatException: For input string|DateTimeParseException|time: invalid duration"
    # a start-up check of the environment the pod gives it: Elasticsearch/OpenSearch's
    # bootstrap checks (vm.max_map_count, file descriptors), sysctls and ulimits too low
    r"|bootstrap checks? failed|is too low, increase to at least"
    # a command line the program refuses: argparse, click, Go's flag, cobra, the JVM, Node
    r"|unrecognized arguments?:|argument [-\w]+: invalid choice|the following arguments are "
    r"required|No such option: -|Error: Missing option '|flag needs an argument"
    r"|Error: unknown command \"[^\"]+\" for \"|Unrecognized VM option|Unrecognized option: -"
    r"|Could not create the Java Virtual Machine|bad option: --?\w"
    # component-base's --feature-gates parser (kube components, controllers built on it)
    r"|unrecognized feature gate: \w+|cannot set feature gate \w+ to"
    # a server refusing its config file: nginx's [emerg], HAProxy's parser, a keyword it lacks
    r"|unknown directive|invalid number of arguments in \"\w+\" directive"
    r"|directive is not allowed here|\"\w+\" directive is duplicate|unknown keyword"
    r"|configuration file \S+ test failed|\[emerg\][^\n]*\b(?:unexpected|invalid)\b"
    # a config template rendered at start (gomplate, Go templates, envsubst) missing a value
    r"|map has no entry for key|failed to render template|undefined variable",
    re.IGNORECASE,
)
_CONFIG_FILE = re.compile(r"""["']?(/[\w./-]+\.(?:ya?ml|json|toml|conf|cfg|ini|properties|xml))""")
"""A configuration file a parse error names (``in "/etc/pricing/rules.yaml", line 14``)."""


def _config_file(hit_log: LogSnapshot | None, lineno: int) -> str | None:
    """The config file named on the error line or the few lines around it."""
    if hit_log is None:
        return None
    window = hit_log.lines[max(0, lineno - 8) : lineno + 3]
    for line in reversed(window):
        m = _CONFIG_FILE.search(line)
        if m:
            return m.group(1)
    return None


def _quoted_setting(c: ContainerSnapshot, hits: list[Hit]) -> str:
    """The env var (and its ConfigMap) an error line quotes: by its value (``'15mins'``), or by
    the setting's name as the program spells it (pydantic-settings' ``field
    "cors_allowed_origins"`` for CORS_ALLOWED_ORIGINS, Spring's relaxed ``cors.allowed-origins``,
    either behind an env prefix such as CHECKOUT_)."""
    values = {**c.config_env, **c.env}

    def named(var: str, value: str) -> str:
        origin = c.config_env_source.get(var) if var not in c.env else None
        return f"{var}={_quote_value(value)}" + (f" from ConfigMap {origin}" if origin else "")

    for h in hits:
        for value in _QUOTED.findall(h.line):
            for var, v in values.items():
                if v == value and not value.isdigit():
                    return named(var, value)
    for h in hits:
        for token in _QUOTED.findall(h.line):
            key = _setting_key(token)
            if len(key) < _MIN_SETTING_CHARS:
                continue
            for var, v in values.items():
                if _setting_key(var).endswith(key):
                    return named(var, v)
    return ""


#: A setting name shorter than this (``port``, ``host``) is too common to tie to one env var.
_MIN_SETTING_CHARS = 8


def _setting_key(name: str) -> str:
    """A setting's name with case and separators dropped: env var, field and property alike."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _quote_value(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


_QUOTED = re.compile(r"""['"]([^'"\s]{2,80})['"]""")


_CONNECTION_FAILED = re.compile(
    r"connection refused|ECONNREFUSED|connection reset|timed out|i/o timeout|no route to host",
    re.IGNORECASE,
)
#: A program saying that what it was told to use does not exist.
_DOES_NOT_EXIST = re.compile(
    r"does not exist|doesn't exist|\bnot found\b|Error 404|\b404\b|NoSuchBucket"
    r"|no such (?:bucket|instance|database|table|topic|queue|project|cluster|key)"
    r"|unknown (?:bucket|instance|database|topic|queue|project|cluster)",
    re.IGNORECASE,
)
#: Configured values shorter than this are too common to tell a name (``info``, ``true``).
_MIN_VALUE_CHARS = 6


#: A program that looks for its ServiceAccount token file and does not find it.
_NO_TOKEN_FILE = re.compile(
    r"/var/run/secrets/kubernetes\.io/serviceaccount/(?:token|ca\.crt|namespace)\b[^\n]{0,40}"
    r"(?:no such file|not found|does not exist|cannot find)",
    re.IGNORECASE,
)


#: The kubelet refusing to create a container its security context forbids: runAsNonRoot
#: with an image whose user is root (or a name it cannot check), CreateContainerConfigError.
_NON_ROOT_REFUSED = re.compile(
    r"container has runAsNonRoot and image (?:will run as root|has non-numeric user"
    r"[^,)]*)",
    re.I,
)


def _security_context_refused(ctx: Context, ev: EvidenceIndex) -> Finding | None:
    """runAsNonRoot set while the image runs as root (or as a user name the kubelet cannot
    verify): the kubelet never creates the container. The template's securityContext and the
    image disagree; set runAsUser to a non-root UID the image supports, or use an image
    built to run unprivileged."""
    for pod, c in containers(ctx):
        m = _NON_ROOT_REFUSED.search(f"{c.message} {c.last_message}")
        if m is None or c.state != "waiting":
            continue
        return Finding(
            Category.BAD_CONFIG,
            0.92,
            summary=(
                f"The kubelet refuses to create container {c.name} of pod {pod.name}: its "
                f"securityContext sets runAsNonRoot and {m.group(0).split(' and ', 1)[1]}."
            ),
            root_cause=(
                f"Container {c.name} of pod {pod.name} ({c.image}) stays in "
                f"{c.reason}: {quote_line(m.group(0), 160)}. The pod's securityContext requires "
                "runAsNonRoot, but the image's user is root (or a name the kubelet cannot verify "
                "as non-root), so the container is never created."
            ),
            evidence=ev.cite(*pod_cites(ev, pod, c)),
            impact=f"{workload_state(ctx)}; no pod with this template starts.",
            immediate_actions=[
                f"Set runAsUser to a non-root UID the image {c.image} supports (e.g. 101 for "
                "nginx), or use its unprivileged variant; or drop runAsNonRoot if the chart "
                "turned it on by default.",
            ],
            recommendations=[
                "Set a numeric USER in images and run them with runAsNonRoot in CI, so a chart "
                "default cannot surprise the rollout.",
            ],
            commands=pod_commands(ctx, pod, c),
        )
    return None


#: A write the kernel refused because the filesystem is mounted read-only (EROFS), with the
#: path when the program names it: Python's ``[Errno 30] Read-only file system: '/app/x'``,
#: Go's ``mkdir /app/x: read-only file system``, Node's ``EROFS: read-only file system, open``.
_READ_ONLY_WRITE = re.compile(
    r"read-only file system(?::\s*['\"]?(?P<a>/[^'\"\s,]+))?"
    r"|(?P<b>/[^'\"\s,:]+): read-only file system",
    re.I,
)


def _read_only_root_write(
    ctx: Context, ev: EvidenceIndex, pod: PodSnapshot, c: ContainerSnapshot
) -> Finding | None:
    """The container sets readOnlyRootFilesystem and the program dies writing a path that no
    volume mount covers (a cache, a pid file, a metrics directory on the image's filesystem):
    the hardening and the program disagree; an emptyDir at that path reconciles them."""
    if not c.read_only_root:
        return None
    for h in grep(ctx, ev, _READ_ONLY_WRITE, pods=[pod.name]):
        if h.log.container != c.name:
            continue
        path = h.match.group("a") or h.match.group("b") or ""
        if path and any(path == m or path.startswith(m.rstrip("/") + "/") for m in c.mounts):
            continue  # a read-only volume (a Secret, a ConfigMap): not the root filesystem
        where = path or "its root filesystem"
        return Finding(
            Category.BAD_CONFIG,
            0.9,
            summary=(
                f"{c.name} in {pod.name} cannot write {where}: its securityContext sets "
                "readOnlyRootFilesystem and no volume is mounted there."
            ),
            root_cause=(
                f"Container {c.name} of pod {pod.name} runs with readOnlyRootFilesystem: true, "
                f"and the program writes {where} on the image's filesystem, which no volume "
                f"mount covers: {quote_line(h.line)}. The kernel refuses the write (EROFS) and "
                "the program exits."
            ),
            evidence=ev.cite(*pod_cites(ev, pod, c), *cite_hits([h])),
            impact=f"{workload_state(ctx)}; every pod of this template fails the same way.",
            immediate_actions=[
                f"Mount an emptyDir at {path or 'the path the program writes'} in container "
                f"{c.name} (keep readOnlyRootFilesystem), or point the program at a mounted "
                "writable directory; then roll out.",
            ],
            recommendations=[
                "When turning on readOnlyRootFilesystem, list the directories the program "
                "writes (tmp, caches, pid and metrics files) and give each an emptyDir.",
            ],
            commands=pod_commands(ctx, pod, c),
        )
    return None


def _token_not_mounted(ctx: Context, ev: EvidenceIndex, pod: PodSnapshot) -> Finding | None:
    """The program builds its Kubernetes client from the pod's ServiceAccount token
    (in-cluster config), and the token file is not there: the pod, or its ServiceAccount,
    sets automountServiceAccountToken: false."""
    hits = grep(ctx, ev, _NO_TOKEN_FILE, pods=[pod.name])
    if not hits:
        return None
    c = pod.container(hits[-1].log.container)
    where = f"container {c.name} of pod {pod.name}" if c else f"pod {pod.name}"
    off = pod.automount_token is False
    sa = pod.service_account or "default"
    return Finding(
        Category.BAD_CONFIG,
        0.88,
        summary=f"{where[0].upper() + where[1:]} has no ServiceAccount token to build its client.",
        root_cause=(
            f"{where[0].upper() + where[1:]} builds its Kubernetes client from the pod's "
            f"ServiceAccount token and the file is not mounted: {quote_line(hits[-1].line, 200)}. "
            + (
                "The pod spec sets automountServiceAccountToken: false."
                if off
                else f"The pod or its ServiceAccount {sa} sets automountServiceAccountToken: "
                "false (or the token volume was removed)."
            )
        ),
        evidence=ev.cite(*cite_hits(hits), *pod_cites(ev, pod, c)),
        impact=f"{workload_state(ctx)}; the program cannot talk to the Kubernetes API at all.",
        immediate_actions=[
            "Set automountServiceAccountToken: true on the pod template (or on ServiceAccount "
            f"{sa}), or mount a projected serviceAccountToken volume at the path the client "
            "reads.",
        ],
        recommendations=[
            "Disable token automounting only for workloads that never call the API; keep it for "
            "controllers and operators.",
        ],
        commands=[
            f"kubectl -n {pod.namespace} get pod {pod.name} -o "
            "jsonpath='{.spec.automountServiceAccountToken}'",
            f"kubectl -n {pod.namespace} get serviceaccount {sa} -o yaml",
        ],
    )


def completes_in_a_loop(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """A container of a long-running workload (Deployment, StatefulSet, DaemonSet) exits 0
    again and again: its command is a one-shot task (a migration, a script) that finishes,
    and restartPolicy Always starts it anew until CrashLoopBackOff. Its command, not its
    code, is wrong."""
    w = controller(ctx)
    if w is None or w.kind not in ("Deployment", "StatefulSet", "DaemonSet"):
        return None
    for pod, c in containers(ctx):
        if c.init or c.restart_count < 2:
            continue
        done = (c.last_reason == "Completed" or c.last_exit_code == 0) and (
            c.last_exit_code in (0, None)
        )
        if not done or c.exit_code not in (None, 0):
            continue
        if _liveness_kills(ctx, pod) or _probe_failures(ctx, pod):
            continue  # the kubelet stopped it for a failing probe; it exited 0 on SIGTERM
        cmd = " ".join(c.command) if c.command else "its image's entrypoint"
        return Finding(
            Category.BAD_CONFIG,
            0.84,
            summary=(
                f"Container {c.name} of {pod.name} exits 0 and is restarted ({c.restart_count} "
                f"times): its command ({cmd}) finishes instead of serving."
            ),
            root_cause=(
                f"Container {c.name} of pod {pod.name} ({w.kind} {w.namespace}/{w.name}) "
                f"completes successfully (exit 0, Completed) and is started again "
                f"{c.restart_count} times: its command, {cmd}, is a task that ends, not a "
                f"server, so the {w.kind}'s restartPolicy Always runs it in a loop until "
                "CrashLoopBackOff."
            ),
            evidence=ev.cite(*pod_cites(ev, pod, c)),
            impact=f"{workload_state(ctx)}; the pods never serve.",
            immediate_actions=[
                f"Give container {c.name} the server's command (or drop the command override), "
                "and run one-shot tasks as a Job or an init container.",
            ],
            recommendations=[
                "Keep migrations and scripts in Jobs (or Helm hooks), never as a Deployment's "
                "command.",
            ],
            commands=[
                *pod_commands(ctx, pod, c),
                kc.rollout_history(w.kind, w.namespace, w.name),
            ],
        )
    return None


#: A file path in an argument or env value: ``--config=/conf/agent.yaml``, ``/etc/app/x.toml``.
_PATH_SETTING = re.compile(r"(?:^|=)(/[\w.-]+(?:/[\w.-]+)+)$")


def _config_path_unmounted(
    ctx: Context, ev: EvidenceIndex, pod: PodSnapshot, c: ContainerSnapshot
) -> Finding | None:
    """The container is told to read a file (an argument or env value) at a path no volume
    mount covers, while its ConfigMap or Secret is mounted elsewhere, and it exits on that
    path not existing: the mount moved (a chart refactor) or the path is a typo, so the
    setting and the mount disagree. A path under a mount whose file is missing is the
    mounted object's missing key instead."""
    mounted = {
        path.rstrip("/"): pod.volume_sources.get(volume, "")
        for path, volume in c.mounts.items()
        if pod.volume_sources.get(volume, "").startswith(("ConfigMap ", "Secret "))
    }
    if not mounted:
        return None
    settings: dict[str, str] = {}
    for word in c.command:
        m = _PATH_SETTING.search(word)
        if m:
            settings.setdefault(m.group(1), f"argument {word}")
    for var, value in {**c.config_env, **c.env}.items():
        m = _PATH_SETTING.search(value)
        if m and m.group(0) == value:
            settings.setdefault(value, f"environment variable {var}")

    def covered(path: str) -> bool:
        return any(path == m or path.startswith(m + "/") for m in c.mounts)

    for path, where in settings.items():
        if covered(path.rstrip("/")):
            continue
        for h in grep(ctx, ev, re.compile(re.escape(path) + r"(?![\w/.-])"), pods=[pod.name]):
            if h.log.container != c.name or not _NO_FILE.search(h.line):
                continue
            shown = list(mounted.items())[:2]
            elsewhere = "; ".join(f"{src} is mounted at {m}" for m, src in shown)
            return Finding(
                Category.BAD_CONFIG,
                0.88,
                summary=f"{c.name} in {pod.name} reads {path}, which no volume mount provides.",
                root_cause=(
                    f"Container {c.name} of pod {pod.name} exits because its {where} names "
                    f"{path}, a path no volume mount covers ({elsewhere}): "
                    f"{quote_line(h.line, 240)}. The setting and the mount disagree."
                ),
                evidence=ev.cite(*cite_hits([h]), *pod_cites(ev, pod, c)),
                impact=f"{workload_state(ctx)}; every start fails the same way until it is fixed.",
                immediate_actions=[
                    f"Point the {where.split(' ')[0]} at the mounted file (under "
                    f"{next(iter(mounted))}) or mount the volume back at the path it names, "
                    "and roll out again.",
                ],
                recommendations=[
                    "Change a mount path and the flags that read it in the same chart value.",
                ],
                commands=pod_commands(ctx, pod, c),
            )
    return None


def _configured_target_missing(ctx: Context, ev: EvidenceIndex, pod: PodSnapshot) -> Finding | None:
    """A container of the pod (the app or a sidecar it dials on localhost, such as a cloud
    SQL proxy) exits on an error that quotes one of its own settings, an argument or an env
    value, and says that what it names does not exist: the setting points at a database,
    instance, bucket or topic that is not there."""
    for c in pod.containers:
        if not c.restart_count and c.state != "terminated":
            continue  # it never failed
        settings: dict[str, str] = {}
        for word in c.command:
            value = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
            if not value.startswith("-"):
                settings.setdefault(value, "argument" if word == value else f"argument {word}")
        for var, value in {**c.config_env, **c.env}.items():
            settings.setdefault(value, f"environment variable {var}")
        settings = {
            v: where
            for v, where in settings.items()
            if len(v) >= _MIN_VALUE_CHARS and not v.isdigit() and "/" not in v[:1]
        }
        if not settings:
            continue
        for h in grep(ctx, ev, _DOES_NOT_EXIST, pods=[pod.name]):
            if h.log.container != c.name or NAME_RESOLUTION_FAILURE.search(h.line):
                continue
            if logged_as_info(h.line):
                continue  # a fallback it takes ("alias x not found, writing to y"), not a stop
            named = [v for v in settings if v in h.line]
            if not named:
                continue
            value = named[0]
            where = settings[value]
            loopback = [
                other.name
                for other in pod.containers
                if other.name != c.name and not other.init and not other.ready
            ]
            return Finding(
                Category.BAD_CONFIG,
                0.87,
                summary=(
                    f"{c.name} in {pod.name} is configured with {value}, which does not exist."
                ),
                root_cause=(
                    f"Container {c.name} of pod {pod.name} exits because its {where} names "
                    f"{value}, and that does not exist: {quote_line(h.line, 240)}."
                    + (
                        f" Container {', '.join(loopback[:2])} of the same pod is not ready "
                        f"either: it depends on {c.name}."
                        if loopback
                        else ""
                    )
                ),
                evidence=ev.cite(*cite_hits([h]), *pod_cites(ev, pod, c)),
                impact=f"{workload_state(ctx)}; every start fails the same way until it is fixed.",
                immediate_actions=[
                    f"Correct {value} in the {where} of container {c.name} (a typo, a renamed "
                    "or not yet created resource), or create what it names.",
                ],
                recommendations=[
                    "Check at deploy time that the resources a workload is configured with exist.",
                ],
                commands=pod_commands(ctx, pod, c),
            )
    return None


def _config_value_crash(
    ctx: Context, ev: EvidenceIndex, pod: PodSnapshot, c: ContainerSnapshot
) -> Finding | None:
    """An unhandled error that quotes the value of one of the container's env vars.

    ``ValueError: invalid literal for int() with base 10: '5k'`` with ``SEND_BATCH_SIZE=5k``:
    the program died converting its configuration, so the variable is the cause, not the code.
    """
    hits = [h for h in grep(ctx, ev, _EXCEPTION_LINE, pods=[pod.name]) if h.log.container == c.name]
    values = {**c.config_env, **c.env}
    for h in reversed(hits):
        if _CONNECTION_FAILED.search(h.line) or STORE_FULL.search(h.line):
            # the value was used: it named a server that did not answer, or one that refused
            # the write for lack of disk, not a bad value
            continue
        candidates = [
            (names, value)
            for value in _QUOTED.findall(h.line)
            if value.lower() not in ("true", "false", "none", "null")
            and (names := [k for k, v in values.items() if v == value and not value.isdigit()])
        ] + _refused_schemes(h.line, values)
        for names, value in candidates:
            var = names[0]
            origin = c.config_env_source.get(var) if var not in c.env else None
            code = exit_code(c)
            return Finding(
                Category.BAD_CONFIG,
                0.84,
                summary=(
                    f"{c.name} in {pod.name} cannot use its environment variable {var}={value}."
                ),
                root_cause=(
                    f"Container {c.name} of pod {pod.name} exits"
                    + (f" with code {code}" if code is not None else "")
                    + f" because the value of its environment variable {var} ({value!r}"
                    + (f", from ConfigMap {origin}" if origin else "")
                    + f") is invalid: {quote_line(h.line)}."
                ),
                evidence=ev.cite(*pod_cites(ev, pod, c), *cite_hits([h])),
                impact=f"{workload_state(ctx)}; every run fails the same way until {var} is fixed.",
                immediate_actions=[
                    f"Set {var} to a value the program accepts (the log says what it expected) "
                    "and roll out or re-run.",
                ],
                recommendations=[
                    "Validate configuration at start with a clear message, and in CI against the "
                    "rendered manifests.",
                ],
                commands=pod_commands(ctx, pod, c),
            )
    return None


#: A quoted word an error names, long enough to tie to one setting (``"pg_cron"``).
_NAMED_VALUE = re.compile(r"""["'“]([\w.+-]{4,64})["'”]""")
#: Words too common to tie an error to a config line.
_COMMON_VALUES = frozenset({"true", "false", "none", "null", "main", "default", "localhost"})


def _config_file_value_crash(
    ctx: Context, ev: EvidenceIndex, pod: PodSnapshot, c: ContainerSnapshot
) -> Finding | None:
    """The program dies at start on an error that quotes a value which a setting line of a
    config file it mounts from a ConfigMap holds: PostgreSQL's ``FATAL: could not access file
    "pg_cron"`` with ``shared_preload_libraries = 'pg_stat_statements,pg_cron'`` in the
    mounted postgresql.conf (the image lacks the library the config loads). The setting is the
    cause; a value the program used to connect, and failed, names a dependency instead."""
    files = {
        name: ctx.mounted_config[name]
        for volume in c.mounts.values()
        if (src := pod.volume_sources.get(volume, "")).startswith("ConfigMap ")
        and (name := src.partition(" ")[2]) in ctx.mounted_config
    }
    if not files:
        return None
    hits = [
        h
        for h in grep(ctx, ev, _NAMED_VALUE, pods=[pod.name])
        if h.log.container == c.name and is_error_line(h.line) and not logged_as_info(h.line)
    ]
    for h in hits:
        if _CONNECTION_FAILED.search(h.line) or NAME_RESOLUTION_FAILURE.search(h.line):
            continue
        for value in _NAMED_VALUE.findall(h.line):
            if value.lower() in _COMMON_VALUES or value.isdigit():
                continue
            setting = re.compile(
                rf"^\s*[\w.\-]+\s*[=:]\s*\S.*(?<![\w-]){re.escape(value)}(?![\w-])", re.M
            )
            for name, data in files.items():
                for key, text in sorted(data.items()):
                    m = setting.search(text)
                    if m is None:
                        continue
                    line_no = text.count("\n", 0, m.start()) + 1
                    line = m.group(0).strip()
                    return Finding(
                        Category.BAD_CONFIG,
                        0.85,
                        summary=(
                            f"{c.name} in {pod.name} cannot start with {value!r}, which its "
                            f"config file {key} (ConfigMap {name}) sets."
                        ),
                        root_cause=(
                            f"Container {c.name} of pod {pod.name} exits at start on "
                            f"{value!r}: {quote_line(h.line, 200)}. The value comes from its "
                            f"config file {key}, mounted from ConfigMap {name}, line {line_no}: "
                            f"{quote_line(line, 160)}; the program cannot use what that "
                            "setting names (a library, plugin or file the image lacks, or a "
                            "misspelt value)."
                        ),
                        evidence=ev.cite(*cite_hits([h]), *pod_cites(ev, pod, c)),
                        impact=(
                            f"{workload_state(ctx)}; every start fails the same way until the "
                            "setting is fixed."
                        ),
                        immediate_actions=[
                            f"Remove or correct {value!r} in {key} of ConfigMap {name} (or use "
                            "an image that provides it) and restart the pods.",
                        ],
                        recommendations=[
                            "Start the image with the rendered config in CI before it ships.",
                        ],
                        commands=[
                            f"kubectl -n {pod.namespace} get configmap {name} -o yaml",
                            *pod_commands(ctx, pod, c),
                        ],
                    )
    return None


#: The scheme at the start of a URL-valued setting: ``postgres`` in ``postgres://u@db/x``.
_URL_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]{1,20})://", re.I)


def _refused_schemes(line: str, values: dict[str, str]) -> list[tuple[list[str], str]]:
    """Env vars whose URL scheme an error line names as the dialect, driver, plugin or scheme
    it could not use: SQLAlchemy's ``Can't load plugin: sqlalchemy.dialects:postgres`` for
    ``DATABASE_URL=postgres://...`` (1.4 dropped that alias), ``unsupported scheme "amqps"``,
    ``unknown driver "mysql2"``. The program read the URL and refused its first word, so the
    setting is wrong, not the code."""
    out: list[tuple[list[str], str]] = []
    for var, value in values.items():
        m = _URL_SCHEME.match(value)
        if not m:
            continue
        scheme = re.escape(m.group(1))
        named = re.search(
            rf"(?:dialects?|schemes?|protocols?|plugins?|drivers?|transports?)\b\W{{1,4}}"
            rf"(?:[\w.]+[.:])?['\"]?{scheme}(?![\w+.-])",
            line,
            re.I,
        )
        if named:
            out.append(([var], f"{m.group(1)}://…"))  # the scheme is what is refused
    return out


_EXEC_FAILED = re.compile(
    r"executable file not found|no such file or directory|exec format error|permission denied",
    re.I,
)


#: Exit codes of a program that refused to start: 1 and 2 (errors, usage), 64 and 78
#: (sysexits' EX_USAGE, EX_CONFIG), and 134, the abort of a runtime on an unhandled
#: exception (.NET, C++'s std::terminate) that a configuration loader threw at start.
_CONFIG_EXIT_CODES = (1, 2, 64, 78, 134)


def bad_config(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """The program rejects its own configuration at start and exits with 1/2 (or 78)."""
    crashed = crashed_container(ctx)
    if crashed is None:
        return None
    pod, c = crashed
    start_failed = {"RunContainerError", "StartError", "ContainerCannotRun"}
    if c.reason in start_failed or c.last_reason in start_failed:
        message = f"{c.message} {c.last_message}"
        if _EXEC_FAILED.search(message) and not _WRONG_ARCH.search(message):
            return _bad_command(ctx, ev, pod, c)
    missing_entry = _missing_entrypoint(ctx, ev, pod, c)
    if missing_entry is not None:
        return missing_entry
    no_token = _token_not_mounted(ctx, ev, pod)
    if no_token is not None:
        return no_token
    refused = (
        _security_context_refused(ctx, ev)
        or _read_only_root_write(ctx, ev, pod, c)
        or _config_path_unmounted(ctx, ev, pod, c)
    )
    if refused is not None:
        return refused
    code = exit_code(c)
    # What the crashed container says: a sidecar's own config complaint (an exporter missing
    # its optional file) is not why this one exits.
    hits = [
        h for h in grep(ctx, ev, BAD_CONFIG_WORDING, pods=[pod.name]) if h.log.container == c.name
    ]
    if not hits:
        return (
            _configured_target_missing(ctx, ev, pod)
            or _config_value_crash(ctx, ev, pod, c)
            or _config_file_value_crash(ctx, ev, pod, c)
        )
    score = 0.86 if code in _CONFIG_EXIT_CODES else 0.7
    hit = hits[0]
    said = hit.line
    # a summary line and the detail under it: the next line, or within a few lines when the
    # summary announces a list (``... the following error(s):`` then a blank line)
    reach = 3 if hit.line.rstrip().endswith(":") else 1
    follow = min(
        (h for h in hits[1:] if h.log is hit.log and 0 < h.lineno - hit.lineno <= reach),
        key=lambda h: h.lineno,
        default=None,
    )
    if follow is not None:
        said = f"{hit.line} {follow.line}"
    file = _config_file(hit.log, hit.lineno)
    culprit = _quoted_setting(c, hits)
    sources = [*c.config_maps, *(s for s in pod.config_maps if s not in c.config_maps)]
    changed = _recent_change(ctx)
    cmds = pod_commands(ctx, pod, c)
    w = controller(ctx)
    if w is not None and w.kind != "Job":
        cmds += [kc.rollout_history(w.kind, w.namespace, w.name)]
        if changed:
            cmds.append(kc.rollout_undo(w.kind, w.namespace, w.name))
    return Finding(
        Category.BAD_CONFIG,
        score,
        summary=(
            f"{c.name} in {pod.name} rejects its configuration at start"
            + (f" and exits with code {code}" if code is not None else "")
            + "."
        ),
        root_cause=(
            f"Container {c.name} of pod {pod.name} exits"
            + (f" with code {code}" if code is not None else "")
            + f" right after start because its configuration is invalid: {quote_line(said)}"
            + (f" in {file}" if file and file not in hit.line else "")
            + (f"; the value is {culprit}" if culprit else "")
            + (
                f"; the pod's configuration comes from ConfigMap {', '.join(sources[:3])}"
                if sources
                else ""
            )
            + (f"; the configuration changed in {changed[1]}" if changed else "")
            + "."
        ),
        evidence=ev.cite(
            *pod_cites(ev, pod, c), *cite_hits(hits), revision_id(changed[0]) if changed else None
        ),
        impact=f"{workload_state(ctx)}; it crash-loops until the configuration is fixed.",
        immediate_actions=[
            "Fix the invalid value named in the log (flag, environment variable or config file "
            "in the ConfigMap) and roll out again.",
            "If a deploy or ConfigMap change introduced it, roll back first.",
        ],
        recommendations=[
            "Validate configuration in CI (run the binary with --check/--dry-run against the "
            "rendered manifests).",
            "Version ConfigMaps (name suffix hash) so a config change is a rollout that can be "
            "undone.",
        ],
        commands=cmds,
    )


def retention_disabled(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """A volume fills up because its writer never deletes old data: a retention or clean-up
    setting in the ConfigMap it reads is turned off. The configuration is the cause; a bigger
    volume only postpones the alert."""
    if not ctx.retention_settings:
        return None
    s = ctx.retention_settings[0]
    others = [f"{o.key}={o.value}" for o in ctx.retention_settings[1:3]]
    claim = ctx.target.name if ctx.target.kind == "PersistentVolumeClaim" else "the volume"
    writers = sorted({p.name for p in ctx.pods if s.config_map in p.config_maps})
    w = controller(ctx)
    return Finding(
        Category.BAD_CONFIG,
        0.86,
        summary=(
            f"{claim} fills up because {s.key}={s.value} in ConfigMap {s.config_map} turns "
            "retention off."
        ),
        root_cause=(
            f"PersistentVolumeClaim {claim} keeps growing because its writer"
            + (f" ({', '.join(writers[:3])})" if writers else "")
            + f" never deletes old data: ConfigMap {s.namespace}/{s.config_map} ({s.file}, line "
            f"{s.line}) sets {s.key}={s.value}"
            + (f" (and {', '.join(others)})" if others else "")
            + ", which disables retention."
        ),
        evidence=ev.cite(
            *(config_id(r.config_map, r.key) for r in ctx.retention_settings[:3]), ALERT_ID
        ),
        impact=f"{workload_state(ctx)}; when the volume is full its writer stops accepting data.",
        immediate_actions=[
            f"Restore a retention limit for {s.key} in ConfigMap {s.config_map} (or set one per "
            "topic/index) and restart or reload the writer so it deletes old data.",
            f"If the volume is about to fill, expand PersistentVolumeClaim {claim} first (if its "
            "StorageClass allows volume expansion).",
        ],
        recommendations=[
            "Review retention changes like capacity changes: link the writer's retention "
            "settings from the KubePersistentVolumeFillingUp runbook.",
        ],
        commands=[
            f"kubectl -n {s.namespace} get configmap {s.config_map} -o yaml",
            *([kc.rollout_restart(w.kind, w.namespace, w.name)] if w else []),
        ],
    )


#: A database saying that a consumer which stopped reading keeps its write-ahead log:
#: PostgreSQL's inactive replication slot (logical decoding, a replica that left).
_RETAINED_BY_SLOT = re.compile(
    r"replication slot \"(?P<slot>[\w.-]+)\" \(inactive\)"
    r"|inactive replication slot \"?(?P<slot2>[\w.-]+)"
    r"|slot \"(?P<slot3>[\w.-]+)\"[^\n]{0,80}\bretain",
    re.IGNORECASE,
)


def wal_retained(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """A database volume fills because the database keeps its write-ahead log for a
    replication slot nobody reads: a CDC connector or replica that was stopped or removed
    left its slot, and without max_slot_wal_keep_size every WAL segment since is kept."""
    if ctx.alert.name not in FILLING_ALERTS:
        return None
    hits = grep(ctx, ev, _RETAINED_BY_SLOT)
    if not hits:
        return None
    m = hits[-1].match
    slot = m.group("slot") or m.group("slot2") or m.group("slot3")
    claim = ctx.target.name if ctx.target.kind == "PersistentVolumeClaim" else "the volume"
    pod = next((p for p in ctx.pods if p.name == hits[-1].log.pod), None)
    return Finding(
        Category.DISK_PRESSURE,
        0.86,
        summary=(
            f"{claim} fills with write-ahead log that replication slot {slot} keeps: nothing "
            "consumes the slot."
        ),
        root_cause=(
            f"PersistentVolumeClaim {claim} keeps growing because the database keeps its "
            f"write-ahead log for replication slot {slot}, which is inactive: "
            f"{quote_line(hits[-1].line, 220)}. Its consumer (a CDC connector or replica) "
            "stopped reading or was removed and the slot stayed, so every WAL segment since "
            "is kept."
        ),
        evidence=ev.cite(*cite_hits(hits), ALERT_ID),
        impact="When the volume is full the database stops accepting writes.",
        immediate_actions=[
            f"Restart the consumer of slot {slot} if it is still wanted; otherwise drop the "
            f"slot (SELECT pg_drop_replication_slot('{slot}')) so the WAL is recycled.",
            "Set max_slot_wal_keep_size so an abandoned slot can no longer fill the volume.",
        ],
        recommendations=[
            "Alert on pg_replication_slots with active = false and on retained WAL size.",
        ],
        commands=[
            kc.describe("persistentvolumeclaim", namespace(ctx), claim),
            *(
                [
                    kc.exec_in(
                        pod.namespace,
                        pod.name,
                        None,
                        "psql -c 'SELECT slot_name, "
                        "active, pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), "
                        "restart_lsn)) FROM pg_replication_slots'",
                    )
                ]
                if pod
                else []
            ),
        ],
    )


#: The interpreter or the runtime cannot find the program the container is told to run: a
#: Python module or script, a Node entry file, a Java main class or jar, a shell script.
_NO_ENTRYPOINT = re.compile(
    r"^\S*python[\d.]*: No module named '?(?P<module>[\w.]+)'?"
    r"|^\S*python[\d.]*: can't open file '(?P<script>[^']+)'"
    r"|Cannot find module '(?P<node>[^']+)'"
    r"|Could not find or load main class (?P<main>[\w.$]+)"
    r"|Unable to access jarfile (?P<jar>\S+)|no main manifest attribute, in (?P<manifest>\S+)"
    r"|^exec (?P<exec>\S+): no such file or directory"
    r"|^\S*sh: (?:\d+: )?(?:exec: )?(?P<sh>\S+): not found",
    re.MULTILINE,
)


def _missing_entrypoint(
    ctx: Context, ev: EvidenceIndex, pod: PodSnapshot, c: ContainerSnapshot
) -> Finding | None:
    """The container's command names a module, script, class or jar the image does not have
    (renamed in a new image, a typo in the manifest): the program never starts, so it is the
    command, not the code, that is wrong. An import error inside the program names a module
    the command does not: that is the image's own defect, left to the crash rule."""
    for h in grep(ctx, ev, _NO_ENTRYPOINT, pods=[pod.name]):
        if h.log.container != c.name:
            continue
        named = next((g for g in h.match.groups() if g), "")
        words = " ".join(c.command)
        interpreter = bool(h.match.group("module") or h.match.group("script"))
        # the command names it, as given or relative to the working directory
        in_command = any(
            w and (named in w or named.endswith("/" + w.removeprefix("./"))) for w in c.command
        )
        setting = _setting_naming(c, named) if named and not in_command else None
        if setting is not None:
            return _preload_missing(ctx, ev, pod, c, h, named, setting)
        if named and not (in_command or (interpreter and not words)):
            continue
        code = exit_code(c)
        return Finding(
            Category.BAD_CONFIG,
            0.86,
            summary=(
                f"{c.name} in {pod.name} cannot start its program: {named} is not in image "
                f"{c.image}."
            ),
            root_cause=(
                f"Container {c.name} of pod {pod.name} runs "
                + (f"`{words}`" if words else "the image's entrypoint")
                + f", but image {c.image} has no {named}: {quote_line(h.line)}"
                + (f" (exit code {code})" if code is not None else "")
                + " — the command or args of the pod spec do not fit the image (renamed or "
                "moved in this version, or mistyped)."
            ),
            evidence=ev.cite(*pod_cites(ev, pod, c), *cite_hits([h])),
            impact=f"{workload_state(ctx)}; the program never starts.",
            immediate_actions=[
                f"Point command/args of {c.name} at the entrypoint image {c.image} really has "
                "(or roll back to the image the command was written for).",
            ],
            recommendations=[
                "Run each image's entrypoint with the manifests' command in CI before it ships.",
            ],
            commands=pod_commands(ctx, pod, c),
        )
    return None


def _setting_naming(c: ContainerSnapshot, named: str) -> str | None:
    """The env var of ``c`` whose value names the file the runtime cannot find, as a path
    word of it (``NODE_OPTIONS=--require /app/tracing.js``, ``JAVA_TOOL_OPTIONS=-javaagent:
    /otel/agent.jar``, ``PYTHONSTARTUP``): the runtime loads it before the program itself."""
    if "/" not in named and "." not in named:
        return None
    values = {**c.config_env, **c.env}
    for var, value in values.items():
        words = re.split(r"[\s=:,]+", value)
        if named in words:
            return var
    return None


def _preload_missing(
    ctx: Context,
    ev: EvidenceIndex,
    pod: PodSnapshot,
    c: ContainerSnapshot,
    hit: Hit,
    named: str,
    var: str,
) -> Finding:
    """An env var tells the runtime to load a file before the program (a Node ``--require``
    preload, a Java agent, a Python startup file) that the image does not have: the setting
    outlived the image layout it was written for, so the program never starts."""
    source = c.config_env_source.get(var)
    where = f" (from ConfigMap {source})" if source and var not in c.env else ""
    code = exit_code(c)
    value = quote_line(c.env.get(var) or c.config_env.get(var, ""), 120)
    return Finding(
        Category.BAD_CONFIG,
        0.87,
        summary=(
            f"{c.name} in {pod.name} cannot start: env var {var}{where} loads {named}, which "
            f"image {c.image} does not have."
        ),
        root_cause=(
            f"Env var {var}{where} of container {c.name} of pod {pod.name} tells the runtime to "
            f"load {named} before the program ({var}={value}), "
            f"but image {c.image} has no such file: {quote_line(hit.line)}"
            + (f" (exit code {code})" if code is not None else "")
            + "; the setting was written for an earlier image layout, so the program never "
            "starts."
        ),
        evidence=ev.cite(*pod_cites(ev, pod, c), *cite_hits([hit])),
        impact=f"{workload_state(ctx)}; the program never starts.",
        immediate_actions=[
            f"Point {var}{where} at the path image {c.image} has (or drop the preload), then "
            "restart the pods; or roll back to the image the setting was written for.",
        ],
        recommendations=[
            "Keep preload settings (NODE_OPTIONS, JAVA_TOOL_OPTIONS) with the image they "
            "belong to, and start each image with its real env in CI.",
        ],
        commands=pod_commands(ctx, pod, c),
    )


def _bad_command(
    ctx: Context, ev: EvidenceIndex, pod: PodSnapshot, c: ContainerSnapshot
) -> Finding:
    msg = c.message if _EXEC_FAILED.search(c.message) else c.last_message
    return Finding(
        Category.BAD_CONFIG,
        0.84,
        summary=f"{c.name} in {pod.name} cannot start: its command is wrong for image {c.image}.",
        root_cause=(
            f"Container {c.name} of pod {pod.name} cannot run its command ({c.reason}): "
            f"{quote_line(msg)} — the command/args of the pod spec do not fit image {c.image}."
        ),
        evidence=ev.cite(*pod_cites(ev, pod, c)),
        impact=f"{workload_state(ctx)}; the container never starts.",
        immediate_actions=["Fix command/args in the pod template or roll back the change."],
        recommendations=["Test the container's entrypoint in CI with the manifests' command."],
        commands=pod_commands(ctx, pod, None),
    )


def _recent_change(ctx: Context) -> tuple[str, str] | None:
    """(revision name, description) of the newest revision when it changed something."""
    w = ctx.workload
    if w is None or not w.revisions:
        return None
    newest = max(w.revisions, key=lambda r: r.revision or 0)
    if newest.changes:
        text = f"revision {newest.revision} ({newest.name}: {'; '.join(newest.changes)})"
        return newest.name, text
    return None


# --- application crash -------------------------------------------------------------------------

_CRASH = re.compile(
    r"Traceback \(most recent call last\)|^panic:|\bpanic\b|Exception in thread"
    r"|Unhandled(?:PromiseRejection| exception)|uncaught exception|fatal error:"
    r"|\bFATAL\b|SIGSEGV|segmentation fault|core dumped|\b\w+(?:Error|Exception)\b"
    r"|thread '[^']*' panicked at"  # Rust
    r"|^[a-z_]\w*(?:\.\w+)+: ",  # a qualified exception name: psycopg2.errors.DuplicateTable:
    re.IGNORECASE | re.MULTILINE,
)
_EXCEPTION_LINE = re.compile(
    r"^\s*(?:panic: |Exception in thread|fatal error: |thread '[^']*' panicked at "
    r"|[\w$]+(?:\.[\w$]+)*(?:Error|Exception)\b:?"
    r"|[a-z_][\w$]*(?:\.[\w$]+)+: )"
)
_RUST_PANIC = re.compile(r"thread '[^']*' panicked at")
_FRAME = re.compile(r"^\s*(?:at [\w$.<>]+\(|File \"|\.\.\. \d+ more|goroutine \d+)")
"""A stack frame: where the error passed, never what it was."""


_REMOTE_REFUSAL = re.compile(
    r"AccessDenied|Access Denied|\b40[13]\b|Forbidden|Unauthori[sz]ed|InvalidAccessKeyId|"
    r"SignatureDoesNotMatch|ExpiredToken|permission denied for",
    re.I,
)
"""An exception that only relays a remote service's refusal (an object store's AccessDenied,
an API's 403): the fault is the credentials or policy on the other side, not the program's
code, so the crash is a weak signal and a wrapper above it keeps its own category."""


def app_crash_exception(ctx: Context, ev: EvidenceIndex, _: RuleSettings) -> Finding | None:
    """A traceback/panic in the crashed container's log, with no deeper cause found."""
    crashed = crashed_container(ctx)
    if crashed is None:
        return None
    pod, c = crashed
    code = exit_code(c)
    if "OOMKilled" in (c.reason, c.last_reason) or (
        c.state == "waiting"
        and c.reason
        not in (
            "CrashLoopBackOff",
            "",
        )
    ):
        return None
    log = log_of(ctx, pod.name, c.name)
    hits = grep(ctx, ev, _CRASH, pods=[pod.name])
    hits = [
        h
        for h in hits
        if h.log.container == c.name
        and (is_error_line(h.line) or _EXCEPTION_LINE.search(h.line))
        # an exception the program logs at info level it handled (Celery's "retry: Retry in
        # 30s: HTTPError(...)"): it went on, so it is not what ended it
        and not logged_as_info(h.line)
    ]
    if not hits:
        if code in (None, 0) or not (c.restart_count or c.state == "terminated"):
            return None
        if c.state == "running" and c.ready:
            return None  # it runs and is ready: past exits without a reason prove nothing
        # An exit code without an error in the log, an OOM, a probe or a dependency proves no
        # cause: say what was seen, and that it does not tell why.
        return Finding(
            Category.UNKNOWN,
            0.3,
            summary=f"{c.name} in {pod.name} exits with code {code} and restarts.",
            root_cause=(
                f"Container {c.name} of pod {pod.name} keeps exiting with code {code} "
                f"({c.restart_count} restarts); its log shows no reason"
                + (f", last line {quote_line(log.lines[-1])}" if log and log.lines else "")
                + "."
            ),
            evidence=ev.cite(*pod_cites(ev, pod, c)),
            impact=f"{workload_state(ctx)}.",
            immediate_actions=["Read the previous container's full log and its exit code."],
            recommendations=["Log the reason before exiting non-zero."],
            commands=pod_commands(ctx, pod, c),
        )
    exc = _exception_line(hits, log)
    where = _innermost_frame(log)
    if where and where not in exc:
        exc = f"{exc} (at {where})"
    conflict = _classpath_conflict(log)
    if code in (None, 0) and not c.restart_count and c.state != "terminated":
        return None  # it never exited: error lines of a running process are not a crash
    score = 0.72 if code not in (None, 0) or c.restart_count else 0.6
    if _REMOTE_REFUSAL.search(exc):
        score = 0.55
    if code in _KILLED_FROM_OUTSIDE:
        # 137/143 is SIGKILL/SIGTERM sent to the process (a deletion, an eviction, a Job's
        # deadline, a probe): an exception in the log did not end it, so it proves no crash
        score = min(score, 0.5)
    w = controller(ctx)
    cmds = pod_commands(ctx, pod, c)
    changed = _recent_change(ctx)
    if w is not None and w.kind != "Job":
        cmds.append(kc.rollout_history(w.kind, w.namespace, w.name))
        if changed:
            cmds.append(kc.rollout_undo(w.kind, w.namespace, w.name))
    return Finding(
        Category.APP_CRASH_EXCEPTION,
        score,
        summary=f"{c.name} in {pod.name} crashes on an unhandled error: {quote_line(exc, 140)}.",
        root_cause=(
            f"Container {c.name} of pod {pod.name} crashes"
            + (f" (exit code {code}, {c.restart_count} restarts)" if code is not None else "")
            + f" on an unhandled error in the application: {quote_line(exc)}"
            + (f"; {conflict}" if conflict else "")
            + (f"; it started with {changed[1]}" if changed else "")
            + "."
        ),
        evidence=ev.cite(*pod_cites(ev, pod, c), *cite_hits(hits, 4)),
        impact=f"{workload_state(ctx)}; the container crash-loops with growing back-off.",
        immediate_actions=[
            *(
                [
                    "Align the two libraries' versions in the build (a dependency pin or BOM) and "
                    "rebuild the image; roll back meanwhile."
                ]
                if conflict
                else []
            ),
            "Read the stack trace in the previous container's log and fix the failing code path; "
            "roll back if a recent deploy introduced it.",
        ],
        recommendations=[
            "Catch and log errors at the top of request handlers and workers so one bad input "
            "does not kill the process.",
            "Add a test reproducing the exception.",
        ],
        commands=cmds,
    )


#: Spring Boot's failure analysis of a NoSuchMethodError names the jar of the calling class
#: and of the called one: ``The called method's class, X, is available from the following
#: locations:`` then ``jar:.../BOOT-INF/lib/jackson-databind-2.11.4.jar!/...``.
_CLASS_FROM = re.compile(
    r"The (?P<side>calling|called) method's class, (?P<cls>[\w.$]+), (?:was loaded|is available)"
)
_JAR = re.compile(r"/(?P<jar>[\w.-]+?-\d[\w.-]*)\.jar!")


def _classpath_conflict(log: LogSnapshot | None) -> str:
    """The two jars of a binary incompatibility, when the log names them: the calling class's
    library was built against another version of the called class's library than the one on
    the classpath (a transitive pin, a BOM, a shaded copy). A build defect, not the cluster's."""
    if log is None:
        return ""
    found: dict[str, tuple[str, str]] = {}
    for i, line in enumerate(log.lines):
        m = _CLASS_FROM.search(line)
        if m is None or m.group("side") in found:
            continue
        jar = next((j for later in log.lines[i : i + 4] if (j := _JAR.search(later))), None)
        if jar is not None:
            found[m.group("side")] = (m.group("cls").rsplit(".", 1)[-1], jar.group("jar"))
    if set(found) != {"calling", "called"}:
        return ""
    (caller, caller_jar), (called, called_jar) = found["calling"], found["called"]
    return (
        f"a library version conflict: {caller} from {caller_jar}.jar calls a method that "
        f"{called} from {called_jar}.jar lacks: the build resolved a version of "
        f"{called_jar.rsplit('-', 1)[0]} that {caller_jar.rsplit('-', 1)[0]} was not built against"
    )


#: Exit codes of a process killed by a signal it did not raise itself: 128+9, 128+15.
_KILLED_FROM_OUTSIDE = frozenset({137, 143})


_PY_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<fn>[\w<>.]+)')
_LIBRARY = re.compile(r"site-packages|dist-packages|/lib/python\d|<frozen |/usr/lib/")


#: A stack frame that names its file and line: Java/.NET (``at a.B.c(B.java:57)``, ``at
#: A.B.C() in /src/B.cs:line 57``), Node (``at fn (/app/x.js:42:50)``), Go (``\t/app/x.go:42``).
_OTHER_FRAME = re.compile(
    r"^\s*at (?P<fn>[\w$.<>`]+)\(?[^()]*\)? in (?P<file>\S+?):line (?P<line>\d+)"
    r"|^\s*at (?P<fn2>[\w$.<>]+) \((?P<file2>[^():]+):(?P<line2>\d+)(?::\d+)?\)"
    r"|^\s*at (?P<fn3>[\w$.<>]+)\((?P<file3>[\w$]+\.(?:java|kt|scala)):(?P<line3>\d+)\)"
)
_OTHER_LIBRARY = re.compile(
    r"node:internal|node_modules|^(?:java|javax|jdk|sun|kotlin|scala|System|Microsoft)\.|"
    r"^(?:org\.springframework|io\.netty|org\.apache)\."
)


def _innermost_frame(log: LogSnapshot | None) -> str:
    """The program's own frame nearest the error (``billing/proration.py:37 in prorate``,
    ``LineMapper.cs:line 57 in Quokka.Invoicing.Export.LineMapper.Map``): where to look, past
    the libraries it called. Python lists the innermost frame last; Java, .NET and Node
    first."""
    if log is None:
        return ""
    frames = [m for line in log.lines if (m := _PY_FRAME.match(line))]
    own = [m for m in frames if not _LIBRARY.search(m.group("file"))]
    if own:
        m = own[-1]
        return f"{m.group('file').removeprefix('/app/')}:{m.group('line')} in {m.group('fn')}"
    for line in log.lines:
        o = _OTHER_FRAME.match(line)
        if o is None:
            continue
        fn = o.group("fn") or o.group("fn2") or o.group("fn3") or ""
        file = o.group("file") or o.group("file2") or o.group("file3") or ""
        lineno = o.group("line") or o.group("line2") or o.group("line3") or ""
        if _OTHER_LIBRARY.search(fn) or _OTHER_LIBRARY.search(file):
            continue
        return f"{file.rsplit('/', 1)[-1]}:{lineno} in {fn}"
    return ""


def _exception_line(hits: list[Hit], log: LogSnapshot | None) -> str:
    """The line that names the error: a panic's first line or a traceback's last line."""
    for h in hits:
        if h.line.startswith("panic:") or "Exception in thread" in h.line:
            return h.line
        if _RUST_PANIC.search(h.line):
            # Rust 1.73+ prints the panic's message on the line after its location
            after = h.log.lines[h.lineno] if h.lineno < len(h.log.lines) else ""
            return f"{h.line} {after.strip()}".strip() if h.line.rstrip().endswith(":") else h.line
    hits = [h for h in hits if not _FRAME.search(h.line)] or hits
    named = [h for h in hits if _EXCEPTION_LINE.search(h.line)]
    if named:
        return named[-1].line
    return hits[-1].line
