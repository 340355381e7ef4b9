#!/usr/bin/env python3
"""Offline validation of Jetway's deployment files.

Run by scripts/validate-deploy.sh, which installs the pinned Python packages
(scripts/deploy/requirements.txt) and the optional tools, and passes their
paths in the environment:

  NATS_SERVER_BIN    nats-server for `-t` config tests (required)
  HAPROXY_BIN        haproxy for `-c` (optional; HAPROXY_LIBS: LD_LIBRARY_PATH)
  HADOLINT_BIN       hadolint for the Dockerfile (optional)
  CRD_NODE, CRD_MODULES, CRD_SCRIPT   node, node_modules and validate-crds.mjs
                     for the custom resources (optional)
  <TOOL>_SKIP        why an optional tool is missing (printed as a note)
  KUBECTL            the kubectl whose `kubectl kustomize` renders deploy/k8s
                     (default: kubectl on PATH; where there is none, the
                     Kubernetes checks are skipped and the report says so)

Checks, each printed as `ok`, `FAIL` or `SKIP`:
  - Kubernetes: renders deploy/k8s/base and every overlay with the real
    kustomize (`kubectl kustomize`), validates every object against the
    Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields are
    errors) for the oldest and newest supported Kubernetes versions, custom
    resources against their CRD schemas, and checks what neither makes: that
    the pieces fit together (selectors, ports, probes, ConfigMap references,
    the binaries' settings against grace periods, R3 and listen ports, the
    KEDA endpoint, hardening);
  - docker-compose.yaml against the Compose specification schema, plus the
    same fit checks; the load balancer config (no stickiness, haproxy -c);
  - every nats-server configuration with the real pinned `nats-server -t`;
  - the Dockerfile (structure, hadolint).
Writes <out>/workloads.json: every place a Jetway binary runs, with its
arguments, environment and config files, for tests/tests/deploy.rs to check
against the real binaries.

The binaries' defaults come from README.md's settings table, which is
generated from the code (tests/tests/config_table.rs keeps them equal).

`--kustomization DIR` (repeatable) checks only those kustomizations (the
Kubernetes part), e.g. a deliberately broken overlay in a test.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate.utils as kv
import yaml

ROOT = Path(__file__).resolve().parents[2]

# deploy/schemas/README.md: from PyPI check-jsonschema 0.39.0.
COMPOSE_SCHEMA = "deploy/schemas/compose-spec.json"
COMPOSE_SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"

# The oldest Kubernetes the manifests support (lifecycle.preStop.sleep is
# beta, on by default, from 1.30) and the newest kubernetes-validate knows.
KUBE_VERSIONS = ["1.30.0", "1.37.0"]

KUSTOMIZATIONS = [
    "deploy/k8s/base",
    "deploy/k8s/overlays/example",
    "deploy/k8s/overlays/no-keda",
]
COMPOSE_FILE = "docker-compose.yaml"
HAPROXY_CFG = "deploy/lb/haproxy.cfg"
DOCKERFILE = "Dockerfile"
NATS_CONF = "nats.conf"
NATS_CLUSTER_GLOB = "deploy/nats/cluster/*.conf"
NATS_PERMISSIONS = "deploy/nats/permissions.conf"
# Test passwords for `nats-server -t` (the permissions read them).
NATS_PASSWORDS = {f"NATS_{role}_PASSWORD": f"validate-{role.lower()}" for role in ("GATEWAY", "WORKER", "OPERATOR")}

# API groups whose kinds are custom resources (validated against their CRDs).
CRD_GROUPS = {"keda.sh", "monitoring.coreos.com"}

# Jetway's worker consumer of the default service, as the KEDA scaler must
# name it (the Rust test compares these with the worker and shared crates).
JETWAY_STREAM = "JETWAY_0"
JETWAY_CONSUMER = "jetway-workers"

# README.md's settings table, generated from the code (shared/src/config/
# settings/tables.rs): the binaries' defaults.
README = "README.md"
SETTINGS_BEGIN = "<!-- The settings table below is generated"
SETTINGS_END = "<!-- end of the generated settings table -->"

# Kubernetes kinds without a namespace.
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "APIService", "CSIDriver", "CSINode", "RuntimeClass", "Node",
}


# --------------------------------------------------------------------------
# Reporting


class Report:
    """`ok` lines only with VERBOSE=1; FAIL and SKIP lines always."""

    def __init__(self) -> None:
        self.ok = 0
        self.section_ok = 0
        self.failed: list[str] = []
        self.skipped: list[str] = []
        self.verbose = os.environ.get("VERBOSE", "") not in ("", "0")

    def good(self, msg: str) -> None:
        self.ok += 1
        self.section_ok += 1
        if self.verbose:
            print(f"  ok    {msg}")

    def fail(self, msg: str) -> None:
        self.failed.append(msg)
        print(f"  FAIL  {msg}")

    def skip(self, msg: str) -> None:
        self.skipped.append(msg)
        print(f"  SKIP  {msg}")

    def check(self, cond: bool, msg: str, detail: str = "") -> bool:
        if cond:
            self.good(msg)
        else:
            self.fail(msg + (f": {detail}" if detail else ""))
        return cond

    def section(self, title: str) -> None:
        self.end_section()
        print(f"== {title}")

    def end_section(self) -> None:
        if self.section_ok:
            print(f"  {self.section_ok} checks ok")
        self.section_ok = 0


R = Report()


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------
# Rendering: the real kustomize, `kubectl kustomize`.


class RenderError(Exception):
    pass


def find_kustomize() -> tuple[list[str] | None, str]:
    """(`kubectl kustomize` command, its versions), or (None, why not)."""
    exe = os.environ.get("KUBECTL") or "kubectl"
    path = shutil.which(exe)
    if not path:
        return None, f"{exe} not found"
    res = subprocess.run([path, "version", "--client"], capture_output=True, text=True)
    client = re.search(r"Client Version:\s*(\S+)", res.stdout)
    kust = re.search(r"Kustomize Version:\s*(\S+)", res.stdout)
    if res.returncode != 0 or not kust:
        return None, f"{path} has no kustomize (`kubectl version --client`: {(res.stdout + res.stderr).strip()})"
    return [path, "kustomize"], f"kubectl {client.group(1) if client else '?'}, kustomize {kust.group(1)}"


def render(cmd: list[str], directory: Path) -> list[dict]:
    res = subprocess.run(cmd + [str(directory)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RenderError(f"`kubectl {shlex.join(cmd[1:] + [rel(directory)])}` failed: {res.stderr.strip()}")
    return [d for d in yaml.safe_load_all(res.stdout) if d is not None]


def show_id(o: dict) -> str:
    md = o.get("metadata") or {}
    ns = md.get("namespace")
    return f"{o.get('kind')}/{md.get('name')}" + (f" (ns {ns})" if ns else "")


def split_image(image: str) -> tuple[str, str]:
    """('registry/name', ':tag' or '@digest' or '')."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


# --------------------------------------------------------------------------
# Kubernetes schemas

kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)


def validate_schemas(name: str, objs: list[dict], crds: list) -> None:
    for o in objs:
        group = o.get("apiVersion", "").split("/")[0]
        if group in CRD_GROUPS:
            crds.append({"source": name, "object": o})
            continue
        errors = []
        for version in KUBE_VERSIONS:
            try:
                kv.validate(o, version, strict=True)
            except kv.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                errors.append(f"k8s {version}: {path}: {e.message}")
            except kv.SchemaNotFoundError as e:
                errors.append(e.message)
        R.check(not errors, f"{name}: {show_id(o)} valid for Kubernetes {', '.join(v[:-2] for v in KUBE_VERSIONS)} (strict)",
                "; ".join(errors))


def validate_crds(crds: list, out: Path) -> None:
    node = os.environ.get("CRD_NODE")
    if not node:
        for c in crds:
            R.skip(f"{c['source']}: {show_id(c['object'])} not checked against its CRD schema "
                   f"({os.environ.get('CRD_SKIP', 'validators not installed')})")
        return
    path = out / "crd-objects.json"
    path.write_text(json.dumps(crds), encoding="utf-8")
    res = subprocess.run([node, os.environ["CRD_SCRIPT"], os.environ["CRD_MODULES"], str(path)],
                         capture_output=True, text=True)
    for line in res.stdout.splitlines():
        if line.startswith("ok "):
            R.good(line[3:] + " valid against its CRD schema")
        elif line.startswith("NO MODEL"):
            R.skip(line + " (no schema for this kind here)")
        else:
            R.fail(line)
    if res.returncode not in (0, 1, 3):
        R.fail(f"CRD validation failed to run: {res.stderr.strip()}")


# --------------------------------------------------------------------------
# Shared facts: the Dockerfile's runtime stages (binary, ENV), and how a
# container's image maps to a Jetway binary.


def dockerfile_stages() -> dict:
    """{stage: {"from", "entrypoint", "env", "user", "copies", "healthcheck"}}."""
    text = (ROOT / DOCKERFILE).read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)  # line continuations
    stages: dict = {}
    cur = None
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        word, _, rest = s.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            cur = {"from": m.group(1), "entrypoint": None, "env": {}, "user": None,
                   "copies": [], "run": [], "healthcheck": False}
            stages[m.group(2) or f"#{len(stages)}"] = cur
        elif cur is None:
            continue
        elif word == "ENTRYPOINT":
            cur["entrypoint"] = json.loads(rest)
        elif word == "ENV":
            for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', rest):
                cur["env"][k] = v.strip('"')
        elif word == "USER":
            cur["user"] = rest.strip()
        elif word == "COPY":
            cur["copies"].append(rest)
        elif word == "RUN":
            cur["run"].append(rest)
        elif word == "HEALTHCHECK":
            cur["healthcheck"] = True
    return stages


STAGES: dict = {}


def binaries() -> dict:
    """binary name -> Dockerfile stage."""
    out = {}
    for name, st in STAGES.items():
        if st["entrypoint"]:
            out[Path(st["entrypoint"][0]).name] = name
    return out


def image_binary(image: str, command: list | None) -> str | None:
    """The Jetway binary a container runs, or None for other software."""
    if command:
        b = Path(command[0]).name
        return b if b.startswith("jetway") else None
    repo = split_image(image)[0].rsplit("/", 1)[-1]
    return repo if repo.startswith("jetway") else None


# --------------------------------------------------------------------------
# Kubernetes: do the pieces fit together?


def labels_match(selector: dict, labels: dict) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        val = labels.get(e["key"])
        op = e["operator"]
        if op == "In" and val not in e["values"]:
            return False
        if op == "NotIn" and val in e["values"]:
            return False
        if op == "Exists" and e["key"] not in labels:
            return False
        if op == "DoesNotExist" and e["key"] in labels:
            return False
    return True


def parse_size(s: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|[kmgt]b?)?\s*", str(s))
    if not m:
        raise ValueError(f"size {s!r}")
    n, unit = float(m.group(1)), (m.group(2) or "").upper().rstrip("B")
    # NATS sizes (MB, GB) are powers of 1024, as are Kubernetes' Mi, Gi.
    mult = {"": 1, "K": 1024, "KI": 1024, "M": 1024**2, "MI": 1024**2,
            "G": 1024**3, "GI": 1024**3, "T": 1024**4, "TI": 1024**4}[unit]
    return int(n * mult)


def nats_conf_value(text: str, key: str) -> str | None:
    m = re.search(rf"^\s*{key}\s*[:=]\s*\"?([^\"\n#]+?)\"?\s*(?:#.*)?$", text, re.M)
    return m.group(1).strip() if m else None


def toml_of(files: dict) -> dict:
    merged: dict = {}
    for path, content in files.items():
        try:
            merged.update(tomllib.loads(content))
        except tomllib.TOMLDecodeError as e:
            R.fail(f"{path}: not TOML: {e}")
    return merged


def readme_defaults() -> dict:
    """{binary: {key: default}} from README.md's settings table: `20` is
    "20", a list's values are comma-separated, a default without a value
    (`the hostname`, `none`) is None."""
    text = (ROOT / README).read_text(encoding="utf-8")
    begin, end = text.find(SETTINGS_BEGIN), text.find(SETTINGS_END)
    if begin < 0 or end < begin:
        raise SystemExit(f"{README}: no generated settings table ({SETTINGS_BEGIN!r} ... {SETTINGS_END!r})")
    out: dict = {"gateway": {}, "worker": {}, "jetway": {}}
    for line in text[begin:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`(\w+)`", cells[0]) if len(cells) == 4 else None
        if not m:
            continue
        names = list(out) if cells[1] == "all" else [b.strip() for b in cells[1].split(",")]
        values = re.findall(r"`([^`]*)`", cells[2])
        for b in names:
            out[b][m.group(1)] = ",".join(values) if values else None
    if not all(out.values()):
        raise SystemExit(f"{README}: the settings table names no setting of {[b for b, v in out.items() if not v]}")
    return out


DEFAULTS: dict = {}


def setting(w: dict, key: str):
    """A setting's effective value (flags > environment > file > the
    binary's default, from README.md's settings table)."""
    args = w["args"]
    flag = "--" + key.replace("_", "-")
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    env = w["env"].get("JETWAY_" + key.upper())
    if env is not None:
        return env
    return toml_of(w["config_files"]).get(key, DEFAULTS[w["binary"].removeprefix("jetway-")][key])


def k8s_workloads(name: str, objs: list[dict]) -> list[dict]:
    """Every container running a Jetway binary, with its effective settings."""
    cms = {o["metadata"]["name"]: o.get("data") or {} for o in objs if o["kind"] == "ConfigMap"}
    out = []
    for o in objs:
        if o["kind"] not in ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"):
            continue
        pod = o["spec"] if o["kind"] == "Pod" else o["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            binary = image_binary(c["image"], c.get("command"))
            if not binary:
                continue
            source = f"{name}: {o['kind']}/{o['metadata']['name']} container {c['name']}"
            stage = STAGES.get(binaries().get(binary, ""), {"env": {}})
            env = dict(stage["env"])  # the image's ENV
            env_refs = []
            for ef in c.get("envFrom") or []:
                ref = ef.get("configMapRef")
                if not ref:
                    R.fail(f"{source}: envFrom other than configMapRef is not checked")
                    continue
                if ref["name"] not in cms:
                    R.fail(f"{source}: envFrom ConfigMap {ref['name']} does not exist")
                    continue
                for k, v in cms[ref["name"]].items():
                    env[ef.get("prefix", "") + k] = str(v)
            for e in c.get("env") or []:
                if "value" in e:
                    env[e["name"]] = str(e["value"])
                else:
                    env_refs.append(e["name"])
            files = {}
            for m in c.get("volumeMounts") or []:
                v = volumes.get(m["name"])
                if not v:
                    R.fail(f"{source}: volumeMount {m['name']} has no volume")
                    continue
                if "configMap" not in v:
                    continue
                data = cms.get(v["configMap"]["name"])
                if data is None:
                    R.fail(f"{source}: ConfigMap {v['configMap']['name']} does not exist")
                    continue
                items = v["configMap"].get("items") or [{"key": k, "path": k} for k in data]
                for it in items:
                    if it["key"] not in data:
                        R.fail(f"{source}: ConfigMap {v['configMap']['name']} has no key {it['key']}")
                        continue
                    if m.get("subPath"):
                        if m["subPath"] == it["path"]:
                            files[m["mountPath"]] = data[it["key"]]
                    else:
                        files[m["mountPath"].rstrip("/") + "/" + it["path"]] = data[it["key"]]
            args = list(c.get("command") or [])[1:] + list(c.get("args") or [])
            out.append({
                "source": source, "binary": binary, "args": args,
                "env": {k: v for k, v in env.items() if k.startswith("JETWAY_")},
                "env_refs": [n for n in env_refs if n.startswith("JETWAY_")],
                "config_files": {p: t for p, t in files.items() if p.endswith(".toml")},
                "_object": o, "_container": c,
            })
    return out


def check_k8s(name: str, objs: list[dict], workloads: list[dict], keda: list) -> None:
    by_kind: dict = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    namespaces = {o["metadata"].get("namespace") for o in objs if o["kind"] not in CLUSTER_SCOPED}
    ns_objs = [o["metadata"]["name"] for o in by_kind.get("Namespace", [])]
    R.check(len(namespaces) == 1 and None not in namespaces and ns_objs == list(namespaces),
            f"{name}: one namespace for everything, and its Namespace object",
            f"namespaces {namespaces}, Namespace objects {ns_objs}")
    ns = next(iter(namespaces))

    pods = []  # (owner, pod template labels, pod spec)
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet"):
            tmpl = o["spec"]["template"]
            pods.append((o, tmpl["metadata"].get("labels") or {}, tmpl["spec"]))
            R.check(labels_match(o["spec"]["selector"], tmpl["metadata"].get("labels") or {}),
                    f"{name}: {show_id(o)} selector matches its pod template")

    # Hardening and resources of every pod.
    for o, labels, spec in pods:
        sc = spec.get("securityContext") or {}
        problems = []
        if sc.get("runAsNonRoot") is not True:
            problems.append("pod runAsNonRoot")
        if (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append("pod seccompProfile RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append("automountServiceAccountToken: false")
        if not spec.get("topologySpreadConstraints"):
            problems.append("topologySpreadConstraints")
        for t in spec.get("topologySpreadConstraints") or []:
            if not labels_match(t.get("labelSelector") or {}, labels):
                problems.append(f"topology spread selector on {t['topologyKey']} misses the pods")
        for c in spec["containers"]:
            csc = c.get("securityContext") or {}
            if csc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{c['name']}: allowPrivilegeEscalation false")
            if csc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{c['name']}: readOnlyRootFilesystem")
            if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{c['name']}: capabilities drop ALL")
            res = c.get("resources") or {}
            for part, keys in (("requests", ("cpu", "memory")), ("limits", ("cpu", "memory"))):
                for key in keys:
                    if key not in (res.get(part) or {}):
                        problems.append(f"{c['name']}: resources.{part}.{key}")
            ports = {p.get("name") for p in c.get("ports") or []}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    problems.append(f"{c['name']}: {probe} port {port} not declared")
        R.check(not problems, f"{name}: {show_id(o)} hardened (non-root, read-only, no capabilities, "
                f"seccomp, resources, topology spread)", ", ".join(problems))

    # Services select pods and name their ports.
    for svc in by_kind.get("Service", []):
        sel = svc["spec"].get("selector") or {}
        hits = [(o, spec) for o, labels, spec in pods if labels_match({"matchLabels": sel}, labels)]
        ok = bool(hits)
        missing = []
        for p in svc["spec"].get("ports", []):
            tp = p.get("targetPort")
            if isinstance(tp, str):
                for o, spec in hits:
                    names = {cp.get("name") for c in spec["containers"] for cp in c.get("ports") or []}
                    if tp not in names:
                        missing.append(f"{tp} on {show_id(o)}")
        R.check(ok and not missing, f"{name}: {show_id(svc)} selects pods with its target ports",
                "selects nothing" if not ok else ", ".join(missing))
        R.check(svc["spec"].get("sessionAffinity", "None") == "None",
                f"{name}: {show_id(svc)} has no session affinity")

    # Autoscalers, disruption budgets and KEDA point at real workloads.
    workload_names = {(o["kind"], o["metadata"]["name"]) for o, _, _ in pods}
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        R.check((ref["kind"], ref["name"]) in workload_names, f"{name}: {show_id(hpa)} targets {ref['kind']}/{ref['name']}")
        R.check(hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"], f"{name}: {show_id(hpa)} min <= max")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        R.check(any(labels_match(pdb["spec"]["selector"], labels) for _, labels, _ in pods),
                f"{name}: {show_id(pdb)} selects pods")
    scaled = {(so["spec"]["scaleTargetRef"].get("kind", "Deployment"), so["spec"]["scaleTargetRef"]["name"])
              for so in by_kind.get("ScaledObject", [])}
    hpa_targets = {(h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"])
                   for h in by_kind.get("HorizontalPodAutoscaler", [])}
    R.check(not (scaled & hpa_targets), f"{name}: no workload has both an HPA and a ScaledObject",
            str(scaled & hpa_targets))
    for o, _, _ in pods:
        if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("jetway"):
            key = ("Deployment", o["metadata"]["name"])
            R.check(key in scaled or key in hpa_targets, f"{name}: {show_id(o)} has an autoscaler")
            R.check("replicas" not in o["spec"], f"{name}: {show_id(o)} leaves replicas to its autoscaler")

    # NATS: the StatefulSet, its config, R3.
    sts = [s for s in by_kind.get("StatefulSet", []) if any(
        "nats-server" in " ".join(c.get("command") or []) + c["image"] for c in s["spec"]["template"]["spec"]["containers"])]
    if not R.check(len(sts) == 1, f"{name}: one NATS StatefulSet"):
        return
    nats = sts[0]
    n = nats["spec"]["replicas"]
    headless = nats["spec"]["serviceName"]
    R.check(n == 3, f"{name}: NATS has 3 nodes", f"replicas {n}")
    R.check(bool(nats["spec"].get("volumeClaimTemplates")), f"{name}: NATS nodes have persistent volumes")
    hs = [s for s in by_kind.get("Service", []) if s["metadata"]["name"] == headless]
    R.check(bool(hs) and hs[0]["spec"].get("clusterIP") == "None" and hs[0]["spec"].get("publishNotReadyAddresses") is True,
            f"{name}: headless Service {headless} (publishNotReadyAddresses) for the routes")
    nats_conf = None
    for v in nats["spec"]["template"]["spec"].get("volumes") or []:
        if "configMap" in v:
            data = next((c.get("data") for c in by_kind.get("ConfigMap", []) if c["metadata"]["name"] == v["configMap"]["name"]), {})
            nats_conf = next((t for k, t in data.items() if k.endswith(".conf")), nats_conf)
    if R.check(nats_conf is not None, f"{name}: NATS config in a ConfigMap"):
        sts_name = nats["metadata"]["name"]
        routes = sorted(set(re.findall(r"nats(?:-route)?://([\w.-]+):(\d+)", nats_conf.split("cluster", 1)[-1])))
        want = sorted({(f"{sts_name}-{i}.{headless}", "6222") for i in range(n)})
        R.check(routes == want, f"{name}: NATS routes name every node through {headless}", f"{routes} != {want}")
        R.check(nats_conf_value(nats_conf, "server_name") == "$POD_NAME", f"{name}: NATS server_name is the pod name")
        pvc = nats["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        mfs = nats_conf_value(nats_conf, "max_file_store")
        R.check(mfs is not None and parse_size(mfs) < parse_size(pvc), f"{name}: max_file_store ({mfs}) fits the volume ({pvc})")
        check_max_payload(f"{name}: nats.conf", nats_conf, workloads)

    # NetworkPolicy: only gateways and workers reach the client port.
    nats_labels = nats["spec"]["template"]["metadata"]["labels"]
    pols = [p for p in by_kind.get("NetworkPolicy", []) if labels_match(p["spec"]["podSelector"], nats_labels)]
    if R.check(bool(pols), f"{name}: a NetworkPolicy guards the NATS pods"):
        reach = set()
        for p in pols:
            for rule in p["spec"].get("ingress") or []:
                ports = {pp.get("port") for pp in rule.get("ports") or []}
                if rule.get("ports") and 4222 not in ports and "nats" not in ports:
                    continue
                for peer in rule.get("from") or [{}]:
                    if "namespaceSelector" in peer or "ipBlock" in peer or "podSelector" not in peer:
                        reach.add("<outside the namespace>")
                        continue
                    for o, labels, _ in pods:
                        if labels_match(peer["podSelector"], labels):
                            reach.add(o["metadata"]["name"])
        R.check(reach == {"jetway-gateway", "jetway-worker"},
                f"{name}: only jetway-gateway and jetway-worker reach NATS port 4222", f"reach: {sorted(reach)}")

    # Jetway's settings that must agree with the rest.
    gws = [w for w in workloads if w["binary"] == "jetway-gateway"]
    wks = [w for w in workloads if w["binary"] == "jetway-worker"]
    R.check(len(gws) == 1 and len(wks) == 1, f"{name}: one gateway and one worker workload",
            f"{len(gws)} gateways, {len(wks)} workers")
    for w in workloads:
        o, c = w["_object"], w["_container"]
        pod = o["spec"]["template"]["spec"]
        grace = int(setting(w, "grace_period_secs"))
        sleep = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
        term = pod.get("terminationGracePeriodSeconds", 30)
        R.check(term >= sleep + grace + 5,
                f"{w['source']}: terminationGracePeriodSeconds {term} >= preStop {sleep} + grace_period_secs {grace} + 5")
        R.check(str(setting(w, "replicas")) == str(n), f"{w['source']}: replicas (JETWAY_REPLICAS) = {n} NATS nodes (R3)")
        url = str(setting(w, "nats_url"))
        svc_names = {s["metadata"]["name"] for s in by_kind.get("Service", [])}
        host = re.sub(r"^nats://", "", url).split(":")[0].split(".")[0]
        R.check(host in svc_names, f"{w['source']}: nats_url {url} names a Service here")
        R.check(pod.get("enableServiceLinks") is False,
                f"{w['source']}: enableServiceLinks false (no stray JETWAY_* service variables)")
        if w["binary"] == "jetway-gateway":
            listen = str(setting(w, "listen"))
            port = int(listen.rsplit(":", 1)[1])
            cports = {p["name"]: p["containerPort"] for p in c.get("ports") or []}
            R.check(listen.startswith("0.0.0.0:") and port in cports.values(),
                    f"{w['source']}: listens on 0.0.0.0:{port}, a declared port", listen)
            rp = ((c.get("readinessProbe") or {}).get("httpGet") or {})
            lp = ((c.get("livenessProbe") or {}).get("httpGet") or {})
            R.check(rp.get("path") == "/readyz" and lp.get("path") == "/healthz",
                    f"{w['source']}: readiness /readyz, liveness /healthz")
            R.check(sleep > 0, f"{w['source']}: preStop sleep lets endpoints update before the drain")

    # KEDA: the scaler reads Jetway's consumer from this namespace's NATS.
    for so in by_kind.get("ScaledObject", []):
        ref = so["spec"]["scaleTargetRef"]["name"]
        scaled_workers = [w for w in workloads if w["_object"]["metadata"]["name"] == ref and w["binary"] == "jetway-worker"]
        R.check(bool(scaled_workers), f"{name}: {show_id(so)} scales the worker Deployment")
        # JETWAY_STREAM is the default service's; another service's workers
        # read their own stream.
        for w in scaled_workers:
            R.check(setting(w, "service") == "default",
                    f"{w['source']}: runs the default service, whose stream {JETWAY_STREAM} KEDA reads",
                    f"service {setting(w, 'service')}")
        spec = so["spec"]
        R.check(spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100), f"{name}: {show_id(so)} min <= max")
        if "fallback" in spec:
            ok = any(t["type"] not in ("cpu", "memory") and t.get("metricType", "AverageValue") == "AverageValue"
                     for t in spec["triggers"])
            R.check(ok, f"{name}: {show_id(so)} fallback has an AverageValue trigger (KEDA's rule)")
        for t in spec["triggers"]:
            if t["type"] != "nats-jetstream":
                continue
            md = t["metadata"]
            keda.append({"source": f"{name}: {show_id(so)}", "stream": md.get("stream"),
                         "consumer": md.get("consumer"), "account": md.get("account")})
            R.check((md.get("stream"), md.get("consumer"), md.get("account")) == (JETWAY_STREAM, JETWAY_CONSUMER, "$G"),
                    f"{name}: {show_id(so)} reads stream {JETWAY_STREAM}, consumer {JETWAY_CONSUMER}, account $G")
            want = f"{headless}.{ns}.svc.cluster.local:8222"
            R.check(md.get("natsServerMonitoringEndpoint") == want,
                    f"{name}: {show_id(so)} monitoring endpoint is {want}", md.get("natsServerMonitoringEndpoint", ""))
            int(md.get("lagThreshold", "10"))


def check_max_payload(where: str, conf: str, workloads: list[dict]) -> None:
    mp = nats_conf_value(conf, "max_payload")
    limit = parse_size(mp) if mp else 1024 * 1024
    for w in workloads:
        if w["binary"] == "jetway-gateway":
            body = int(setting(w, "max_body_bytes"))
            R.check(body + 64 * 1024 <= limit,
                    f"{where}: max_payload {mp} >= max_body_bytes {body} + 64 KiB of headers ({w['source']})")


# --------------------------------------------------------------------------
# docker compose


def check_compose(out: Path) -> list[dict]:
    R.section(f"{COMPOSE_FILE} (Compose specification schema)")
    schema_path = ROOT / COMPOSE_SCHEMA
    digest = hashlib.sha256(schema_path.read_bytes()).hexdigest()
    R.check(digest == COMPOSE_SCHEMA_SHA256, f"{COMPOSE_SCHEMA} is the vendored revision (sha256 {digest[:12]}…)")
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    doc = yaml.safe_load((ROOT / COMPOSE_FILE).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    R.check(not errors, f"{COMPOSE_FILE} valid against the Compose specification",
            "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:10]))
    (out / "compose.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")

    services = doc.get("services") or {}
    workloads = []
    for name, svc in services.items():
        build = svc.get("build") or {}
        stage_name = build.get("target") if isinstance(build, dict) else None
        binary = None
        env = {}
        if stage_name:
            stage = STAGES.get(stage_name)
            if not R.check(stage is not None and stage["entrypoint"], f"service {name}: Dockerfile stage {stage_name} exists"):
                continue
            binary = Path(stage["entrypoint"][0]).name
            env = dict(stage["env"])
        elif (svc.get("image") or "").split("/")[-1].startswith("jetway"):
            binary = image_binary(svc["image"], None)
        if svc.get("entrypoint"):
            binary = image_binary("", svc["entrypoint"] if isinstance(svc["entrypoint"], list) else shlex.split(svc["entrypoint"]))
        if not binary:
            continue
        senv = svc.get("environment") or {}
        if isinstance(senv, list):
            senv = dict(e.split("=", 1) if "=" in e else (e, "") for e in senv)
        env.update({k: "" if v is None else str(v) for k, v in senv.items()})
        cmd = svc.get("command") or []
        workloads.append({
            "source": f"{COMPOSE_FILE}: service {name}", "binary": binary,
            "args": cmd if isinstance(cmd, list) else shlex.split(cmd),
            "env": {k: v for k, v in env.items() if k.startswith("JETWAY_")},
            "env_refs": [], "config_files": {}, "_service": name, "_svc": svc,
        })

    gws = [w for w in workloads if w["binary"] == "jetway-gateway"]
    wks = [w for w in workloads if w["binary"] == "jetway-worker"]
    R.check(len(gws) == 2 and len(wks) == 2, "two gateways and two workers", f"{len(gws)} gateways, {len(wks)} workers")
    published = [(n, p) for n, s in services.items() if not s.get("profiles") for p in s.get("ports") or []]
    R.check(len(published) == 1, "one published port (without optional profiles)", str(published))
    check_observability_profile(services, gws, wks)
    for w in workloads:
        svc = w["_svc"]
        dep = (svc.get("depends_on") or {}).get("nats") if isinstance(svc.get("depends_on"), dict) else None
        R.check(bool(dep) and dep.get("condition") == "service_healthy",
                f"{w['source']}: starts after nats is healthy (depends_on condition)")
        grace = int(setting(w, "grace_period_secs"))
        sgp = str(svc.get("stop_grace_period", "10s"))
        m = re.fullmatch(r"(\d+)s", sgp) or re.fullmatch(r"(\d+)m", sgp)
        secs = int(m.group(1)) * (60 if sgp.endswith("m") else 1) if m else 0
        R.check(secs > grace, f"{w['source']}: stop_grace_period {sgp} > grace_period_secs {grace}")
        R.check(str(setting(w, "nats_url")).startswith("nats://nats:"), f"{w['source']}: nats_url names the nats service")
    nats = services.get("nats") or {}
    hc = " ".join((nats.get("healthcheck") or {}).get("test") or [])
    R.check("8222/healthz" in hc, "nats: healthcheck on its /healthz (monitoring port)")
    nats_mount = [v for v in nats.get("volumes") or [] if isinstance(v, str) and v.split(":")[0] == "./nats.conf"]
    R.check(bool(nats_mount), "nats: runs the repository's nats.conf")
    check_max_payload(NATS_CONF, (ROOT / NATS_CONF).read_text(encoding="utf-8"), workloads)

    # The load balancer: HAProxy with this repository's config, in front of
    # exactly the gateway services.
    lbs = [(n, s) for n, s in services.items() if "haproxy" in (s.get("image") or "")]
    if R.check(len(lbs) == 1, "one HAProxy load balancer service"):
        lb_name, lb = lbs[0]
        mounts = [v for v in lb.get("volumes") or [] if isinstance(v, str) and v.split(":")[0] == "./" + HAPROXY_CFG]
        R.check(bool(mounts), f"{lb_name}: mounts {HAPROXY_CFG}")
        R.check(bool(lb.get("ports")), f"{lb_name}: holds the published port")
        R.check("healthcheck" in lb, f"{lb_name}: has a healthcheck")
        deps = lb.get("depends_on") or {}
        R.check({w["_service"] for w in gws} <= set(deps), f"{lb_name}: depends on every gateway")
        cfg = (ROOT / HAPROXY_CFG).read_text(encoding="utf-8")
        servers = re.findall(r"^\s*server\s+\S+\s+([\w.-]+):(\d+)", cfg, re.M)
        want = sorted((w["_service"], str(setting(w, "listen")).rsplit(":", 1)[1]) for w in gws)
        R.check(sorted(servers) == want, f"{HAPROXY_CFG}: servers are the gateway services and their ports",
                f"{sorted(servers)} != {want}")
        for w in gws:
            R.check(str(setting(w, "listen")).startswith("0.0.0.0:"),
                    f"{w['source']}: listens on 0.0.0.0 (reachable by the load balancer)")
    return workloads


def check_observability_profile(services: dict, gws: list, wks: list) -> None:
    """The `observability` profile: Prometheus scrapes exactly the gateways'
    and workers' /metrics, Grafana gets the data source and the dashboard,
    and both publish on loopback only."""
    prof = {n: s for n, s in services.items() if "observability" in (s.get("profiles") or [])}
    if not R.check({"prometheus", "grafana"} <= set(prof), "profile observability: prometheus and grafana",
                   str(sorted(prof))):
        return
    for name, svc in prof.items():
        for p in svc.get("ports") or []:
            R.check(str(p).startswith("127.0.0.1:"), f"{name}: publishes {p} on loopback only")
    prom_cfg = ROOT / "deploy/compose/prometheus.yml"
    mounts = [v.split(":")[0] for v in prof["prometheus"].get("volumes") or [] if isinstance(v, str)]
    R.check("./" + rel(prom_cfg) in mounts, f"prometheus: mounts {rel(prom_cfg)}")
    cfg = yaml.safe_load(prom_cfg.read_text(encoding="utf-8"))
    targets = {t for job in cfg.get("scrape_configs") or [] for sc in job.get("static_configs") or []
               for t in sc.get("targets") or []}
    want = {f"{w['_service']}:{str(setting(w, 'listen')).rsplit(':', 1)[1]}" for w in gws + wks}
    R.check(targets == want, f"{rel(prom_cfg)}: scrapes every gateway and worker", f"{sorted(targets)} != {sorted(want)}")
    promtool = shutil.which("promtool")
    if promtool:
        res = subprocess.run([promtool, "check", "config", str(prom_cfg)], capture_output=True, text=True)
        R.check(res.returncode == 0, f"promtool check config {rel(prom_cfg)}", (res.stdout + res.stderr).strip())
    else:
        R.skip("promtool check config (no promtool on PATH; scripts/install-prometheus.sh brings it)")
    gmounts = [v.split(":") for v in prof["grafana"].get("volumes") or [] if isinstance(v, str)]
    R.check(any(src == "./deploy/grafana/jetway.json" for src, *_ in gmounts), "grafana: mounts the Jetway dashboard")
    prov = ROOT / "deploy/compose/grafana/provisioning"
    ds = yaml.safe_load((prov / "datasources/prometheus.yaml").read_text(encoding="utf-8"))
    R.check(any(d.get("url") == "http://prometheus:9090" for d in ds.get("datasources") or []),
            "grafana: provisioned data source is the compose Prometheus")
    dash = yaml.safe_load((prov / "dashboards/jetway.yaml").read_text(encoding="utf-8"))
    paths = [p.get("options", {}).get("path") for p in dash.get("providers") or []]
    R.check(any(dst.startswith(str(paths[0] if paths else "")) for _, dst, *_ in gmounts if len(gmounts)),
            "grafana: the dashboard provider's path holds the mounted dashboard", str(paths))


def check_haproxy() -> None:
    R.section(f"{HAPROXY_CFG} (round robin, no stickiness, SSE-safe)")
    cfg = (ROOT / HAPROXY_CFG).read_text(encoding="utf-8")
    lines = [ln.split("#", 1)[0].strip() for ln in cfg.splitlines()]
    lines = [ln for ln in lines if ln]
    R.check("balance roundrobin" in lines, "balance roundrobin")
    sticky = [ln for ln in lines if re.match(
        r"(cookie|stick|stick-table|persist|hash-type|balance\s+(source|uri|url_param|hdr|rdp-cookie|hash|random))\b|option\s+persist", ln)]
    R.check(not sticky, "no session stickiness (cookie, stick-table, stick, hashing balance)", "; ".join(sticky))
    buffering = [ln for ln in lines if re.match(r"(compression|option\s+http-buffer-request)\b", ln)]
    R.check(not buffering, "no compression or request buffering (SSE passes straight through)", "; ".join(buffering))
    R.check(any(re.match(r"http-check\s+send\s+meth\s+GET\s+uri\s+/readyz", ln) for ln in lines),
            "active health check on the gateways' /readyz")
    bin_ = os.environ.get("HAPROXY_BIN")
    if not bin_:
        R.skip(f"haproxy -c ({os.environ.get('HAPROXY_SKIP', 'haproxy not available')})")
        return
    env = dict(os.environ)
    if os.environ.get("HAPROXY_LIBS"):
        env["LD_LIBRARY_PATH"] = os.environ["HAPROXY_LIBS"]
    res = subprocess.run([bin_, "-c", "-f", str(ROOT / HAPROXY_CFG)], capture_output=True, text=True, env=env)
    version = subprocess.run([bin_, "-v"], capture_output=True, text=True, env=env).stdout.splitlines()[:1]
    # Name resolution is the host's business, not the config's: the gateway
    # names and Docker's DNS exist only inside compose.
    host_only = ("could not resolve address", "can't connect socket for nameserver")
    warnings = [ln for ln in res.stderr.splitlines()
                if "[WARNING]" in ln and not any(h in ln for h in host_only)]
    R.check(res.returncode == 0 and not warnings,
            f"haproxy -c accepts it ({version[0] if version else 'haproxy'}; gateway names resolve only inside compose)",
            (res.stderr + res.stdout).strip())


# --------------------------------------------------------------------------
# NATS configurations, with the real nats-server


def check_nats(k8s_confs: dict, out: Path) -> None:
    R.section("nats-server configurations (nats-server -t)")
    bin_ = os.environ["NATS_SERVER_BIN"]
    version = subprocess.run([bin_, "--version"], capture_output=True, text=True).stdout.strip()
    confs: list[tuple[str, Path, dict]] = [(NATS_CONF, ROOT / NATS_CONF, {})]
    text = (ROOT / NATS_CONF).read_text(encoding="utf-8")
    block = re.search(r"^# cluster \{\n(?:#.*\n)*?# \}\n", text, re.M)
    if R.check(block is not None, f"{NATS_CONF}: has a commented three-node cluster block"):
        uncommented = re.sub(r"^# ?", "", block.group(0), flags=re.M)
        routes = re.findall(r"nats://([\w.-]+):6222", uncommented)
        R.check(len(routes) == 3, f"{NATS_CONF}: the cluster block lists three routes", str(routes))
        p = out / "nats-with-cluster-block.conf"
        # Written elsewhere: nats-server includes relative to the file, so
        # the permissions go along at the same relative path.
        p.write_text(text.replace(block.group(0), uncommented), encoding="utf-8")
        (out / NATS_PERMISSIONS).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / NATS_PERMISSIONS, out / NATS_PERMISSIONS)
        confs.append((f"{NATS_CONF} with its cluster block uncommented", p, {}))
    permissions = (ROOT / NATS_PERMISSIONS).read_text(encoding="utf-8")
    R.check(f'include "{NATS_PERMISSIONS}"' in text, f"{NATS_CONF}: includes {NATS_PERMISSIONS}")
    for name, (conf, pod) in k8s_confs.items():
        R.check(permissions in conf, f"{name}: the ConfigMap's nats.conf holds {NATS_PERMISSIONS} verbatim")
        p = out / f"k8s-{name.replace('/', '_')}-nats.conf"
        p.write_text(conf, encoding="utf-8")
        confs.append((f"{name}: ConfigMap nats.conf (POD_NAME={pod})", p, {"POD_NAME": pod}))
    cluster = sorted(ROOT.glob(NATS_CLUSTER_GLOB))
    if not cluster:
        R.skip(f"{NATS_CLUSTER_GLOB}: none present")
    confs += [(rel(p), p, {}) for p in cluster]
    for label, path, env in confs:
        res = subprocess.run([bin_, "-t", "-c", str(path)], capture_output=True, text=True,
                             cwd=path.parent, env={**os.environ, **NATS_PASSWORDS, **env})
        R.check(res.returncode == 0, f"{label}: accepted by {version}", (res.stderr + res.stdout).strip())
    for key in ("max_payload", "max_memory_store", "max_file_store", "store_dir", "sync_interval"):
        R.check(nats_conf_value(text, key) is not None, f"{NATS_CONF}: sets {key}")
    R.check(nats_conf_value(text, "http") is not None and "8222" in nats_conf_value(text, "http"),
            f"{NATS_CONF}: monitoring on 8222")


# --------------------------------------------------------------------------
# Dockerfile


def check_dockerfile() -> None:
    R.section(f"{DOCKERFILE} and .dockerignore")
    bins = binaries()
    R.check(set(bins) == {"jetway-gateway", "jetway-worker"}, "runtime stages for jetway-gateway and jetway-worker",
            str(bins))
    build_runs = " ".join(r for st in STAGES.values() for r in st["run"])
    for binary, stage_name in bins.items():
        st = STAGES[stage_name]
        R.check(st["entrypoint"] == [f"/usr/local/bin/{binary}"], f"stage {stage_name}: ENTRYPOINT {binary} (exec form)")
        R.check(st["from"].startswith("gcr.io/distroless/") or st["from"] == "scratch",
                f"stage {stage_name}: distroless runtime, no shell ({st['from']})")
        user = (st["user"] or "").split(":")[0]
        R.check(user.isdigit() and int(user) != 0, f"stage {stage_name}: numeric non-root USER ({st['user']})")
        R.check(any(c.split()[-1] == f"/usr/local/bin/{binary}" and c.split()[-2].endswith("/" + binary)
                    for c in st["copies"]), f"stage {stage_name}: copies the {binary} binary it runs")
        R.check(not st["healthcheck"], f"stage {stage_name}: no HEALTHCHECK (no shell or curl inside; probes from outside)")
        R.check(f"-p {binary}" in build_runs and f"target/release/{binary}" in build_runs,
                f"the build stage builds and copies out {binary}")
    ignore = [ln.strip() for ln in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()]
    for must in ("target/", ".local/", ".git/"):
        R.check(must in ignore, f".dockerignore excludes {must}")
    hadolint = os.environ.get("HADOLINT_BIN")
    if not hadolint:
        R.skip(f"hadolint ({os.environ.get('HADOLINT_SKIP', 'not available')})")
        return
    res = subprocess.run([hadolint, "--no-color", str(ROOT / DOCKERFILE)], capture_output=True, text=True)
    version = subprocess.run([hadolint, "--version"], capture_output=True, text=True).stdout.strip()
    R.check(res.returncode == 0, f"hadolint finds nothing ({version})", (res.stdout + res.stderr).strip())


# --------------------------------------------------------------------------


def public(w: dict) -> dict:
    return {k: v for k, v in w.items() if not k.startswith("_")}


def check_kubernetes(names: list[str], out: Path) -> dict:
    """Renders and checks each kustomization; what the Rust test needs."""
    found = {"workloads": [], "keda": [], "nats_confs": {}, "kustomize": None}
    cmd, version = find_kustomize()
    if cmd is None:
        msg = f"{version}; kustomize rendering not checked ({', '.join(names)}: schemas, CRDs, fit checks)"
        R.section("Kubernetes (kubectl kustomize)")
        print(f"  SKIPPED: {msg}")
        R.skipped.append(msg)
        return found
    found["kustomize"] = version
    crds: list = []
    for name in names:
        R.section(f"{name} ({version}; Kubernetes {', '.join(v[:-2] for v in KUBE_VERSIONS)} schemas)")
        try:
            objs = render(cmd, ROOT / name)
        except (RenderError, OSError, yaml.YAMLError) as e:
            R.fail(f"{name}: cannot render: {e}")
            continue
        R.check(bool(objs), f"{name}: kustomize rendered {len(objs)} objects")
        (out / f"{name.replace('/', '_')}.json").write_text(json.dumps(objs, indent=1), encoding="utf-8")
        validate_schemas(name, objs, crds)
        workloads = k8s_workloads(name, objs)
        check_k8s(name, objs, workloads, found["keda"])
        found["workloads"] += workloads
        for o in objs:
            if o["kind"] == "ConfigMap":
                for key, text in (o.get("data") or {}).items():
                    if key.endswith(".conf") and "jetstream" in text:
                        sts = next((s for s in objs if s["kind"] == "StatefulSet"), None)
                        pod = f"{sts['metadata']['name']}-0" if sts else "nats-0"
                        found["nats_confs"].setdefault(text, (name, pod))
    R.section("custom resources (CRD schemas)")
    validate_crds(crds, out)
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="directory for renders and workloads.json")
    ap.add_argument("--kustomization", action="append", type=Path, metavar="DIR",
                    help="check only this kustomization (repeatable); default: everything")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    STAGES.update(dockerfile_stages())
    DEFAULTS.update(readme_defaults())

    only = [rel(d.resolve()) for d in args.kustomization or []]
    compose_workloads = []
    if not only:
        check_dockerfile()
        compose_workloads = check_compose(out)
        check_haproxy()
    k8s = check_kubernetes(only or KUSTOMIZATIONS, out)
    if not only:
        check_nats({name: (text, pod) for text, (name, pod) in k8s["nats_confs"].items()}, out)

    dockerfile = [{"stage": s, "binary": Path(st["entrypoint"][0]).name,
                   "env": {k: v for k, v in st["env"].items() if k.startswith("JETWAY_")}}
                  for s, st in STAGES.items() if st["entrypoint"]]
    (out / "workloads.json").write_text(json.dumps({
        "workloads": [public(w) for w in compose_workloads + k8s["workloads"]],
        "dockerfile": dockerfile,
        "keda": k8s["keda"],
        "kustomize": k8s["kustomize"],
    }, indent=1), encoding="utf-8")

    R.end_section()
    print(f"\nvalidate-deploy: {R.ok} checks passed, {len(R.failed)} failed, {len(R.skipped)} skipped"
          f" (details in {rel(out)})")
    for s in R.skipped:
        print(f"  skipped: {s}")
    for f in R.failed:
        print(f"  failed:  {f}")
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
