#!/usr/bin/python3
"""kubesim - a Kubernetes apiserver simulator good enough for real kubectl.

One process holds one cluster's state in memory and serves it over HTTPS on
one or more loopback ports (one per simulated master; they share the state).
It writes a kubeconfig (CA data + bearer token, or client certificates) that
both kubectl and lbctl accept.

What it simulates (enough for kubectl 1.27-1.33 version/get/cordon/uncordon/
drain and for lbd's kube client):
  - legacy discovery (/api, /apis, /api/v1, /apis/G/V); aggregated discovery
    requests get plain JSON and clients fall back; /openapi/* is 404
  - /version, /readyz, /livez, /healthz (per listener: ok, fail, hang, down)
  - namespaces, nodes, pods, PDBs, DaemonSets/ReplicaSets/StatefulSets/
    Deployments (read), leases (get/list/create/update/delete with
    resourceVersion compare-and-swap)
  - server-side Table output for get (Accept ...;as=Table;...)
  - PATCH as strategic-merge (treated as a JSON merge patch: enough for
    spec.unschedulable and labels), merge-patch and json-patch
  - label and field selectors (=, ==, !=, exists), limit/continue paging
  - pods/eviction (policy/v1 and v1beta1) honouring PDBs: 429 with the real
    apiserver's message and a DisruptionBudget cause
  - DELETE with grace period: the pod gets a deletionTimestamp and goes away
    after min(grace, --delete-delay) seconds; its ReplicaSet re-creates it
    (new name and UID) on another Ready schedulable node, a StatefulSet
    re-creates it with the same name and a new UID, a DaemonSet on the same
    node
  - cordon side effect of the node lifecycle controller: the
    node.kubernetes.io/unschedulable:NoSchedule taint follows
    spec.unschedulable

Profiles (--profile, or "profile" in a scenario; default k3s, the stricter):
  k3s      no anonymous auth: /readyz, /livez, /healthz and /version answer
           401 without credentials (k3s-io/k3s#3576); 200 to any
           authenticated client (system:public-info-viewer). Servers are not
           tainted.
  kubeadm  anonymous /readyz, /livez, /healthz, /version allowed; control-plane
           nodes carry node-role.kubernetes.io/control-plane:NoSchedule.

Node lifecycle (POST /sim/nodes/NAME):
  {"restart": {"down": S}}  a k3s/kubelet service restart: the bootID stays;
                            the node stays Ready until the node-monitor grace
                            period (--node-monitor-grace, scenario
                            nodeMonitorGracePeriod, 40 s by default) has
                            passed without a heartbeat, then NotReady
                            (Unknown); Ready again S seconds after the restart.
  {"reboot": {"down": S}}   the same, and the bootID changes when it is back.
  {"reboot": true}          the old shortcut: a new bootID at once.

RBAC (scenario "tokens": {TOKEN: "readonly"|"evict"|"admin"}): readonly may
get and list; evict may also patch nodes, delete pods and create
pods/eviction (what a drain needs); anything else is 403 Forbidden with the
real apiserver's message. The --token and client certificates are admin.

Dry run: dryRun=All (query, or DeleteOptions.dryRun) on PATCH, DELETE and
pods/eviction checks as usual (PDBs, RBAC) and stores nothing. evictDelay
(scenario): each eviction answers after that many seconds, outside the state
lock; /sim/state's max_evictions_in_flight shows how many overlapped.

API Priority and Fairness on demand: POST /sim/apf {"reject": N,
"retryAfter": S, "match": "eviction"} makes the next N API requests whose
path contains match answer 429 with Retry-After: S.

Control API (plain HTTP on --control, and the same under /sim/ on the HTTPS
ports, which need the bearer token like any other path):
  GET  /sim/state                        normalized dump of the state
  POST /sim/scenario     {scenario}      replace the state (same shape as --scenario)
  POST /sim/nodes/NAME   {"ready": bool, "kubeletVersion": "v1.29.1",
                          "reboot": true, "unschedulable": bool}
  POST /sim/listeners/I  {"state": "ok"|"fail"|"hang"|"down"}   I = index or name
  GET  /sim/listeners
  GET  /sim/requests                     the last requests (method, path, accept)
  POST /sim/pods         {pod}           add one pod (scenario shape), e.g. one that
                                         arrives on a node in the middle of a drain
  POST /sim/apf          {reject, retryAfter, match}

Scenario (YAML or JSON):
  nodes: [{name, roles: [control-plane], ready: true, kubeletVersion,
           unschedulable, labels: {}, internalIP}]
  pods:  [{name, namespace, node, owner: {kind: ReplicaSet|DaemonSet|
           StatefulSet|Job, name} (omit = unmanaged), mirror: bool,
           emptyDir: bool, labels: {}, phase: Running, ready: true,
           terminationGracePeriodSeconds: 30, tolerations: [],
           terminatingFor: S (deleting since S seconds, held by a finalizer)}]
  pdbs:  [{name, namespace, selector: {labels} | {matchLabels, matchExpressions},
           minAvailable | maxUnavailable, unhealthyPodEvictionPolicy}]
  taints on nodes: [{key, value, effect}]; tolerations on pods: [{key, operator, effect}]
  readyDelay: seconds a re-created pod stays unready (default 0, --ready-delay)
  leases: [{name, namespace, holderIdentity, leaseDurationSeconds}]
Owners named by pods are created as objects (a ReplicaSet's replicas = the
number of its pods).

Shortcuts a reader must know: no watches, no admission, no real scheduler
(least-loaded Ready schedulable node whose NoSchedule taints
the pod tolerates, ties by name), PDB expected count = matching pods that are not
terminating, strategic merge = JSON merge patch (lists replaced, no
$patch directives), created pods are Ready immediately.
"""

import argparse
import base64
import copy
import datetime
import http.server
import json
import os
import random
import socket
import socketserver
import ssl
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

try:
    import yaml
except ImportError:  # YAML scenarios need python3-yaml; JSON ones do not
    yaml = None

GIT_VERSION = "v1.31.4"
LOCK = threading.RLock()


def now_ts():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)


def age(ts):
    if not ts:
        return "<unknown>"
    d = int((datetime.datetime.now(datetime.timezone.utc) - parse_ts(ts)).total_seconds())
    if d < 0:
        d = 0
    if d < 120:
        return "%ds" % d
    if d < 600:
        return "%dm%ds" % (d // 60, d % 60) if d % 60 else "%dm" % (d // 60)
    if d < 3 * 3600:
        return "%dm" % (d // 60)
    if d < 48 * 3600:
        return "%dh" % (d // 3600)
    return "%dd" % (d // 86400)


def rand_suffix(n=5):
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


# ---------------------------------------------------------------- errors

class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            st["details"] = self.details
        return st


def qualified(res):
    return res.plural if not res.group else "%s.%s" % (res.plural, res.group)


def not_found(res, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (qualified(res), name),
                    {"name": name, "group": res.group, "kind": res.plural}
                    if res.group else {"name": name, "kind": res.plural})


def conflict(res, name):
    return ApiError(409, "Conflict",
                    'Operation cannot be fulfilled on %s "%s": the object has been modified; '
                    "please apply your changes to the latest version and try again"
                    % (qualified(res), name),
                    {"name": name, "group": res.group, "kind": res.plural}
                    if res.group else {"name": name, "kind": res.plural})


def already_exists(res, name):
    return ApiError(409, "AlreadyExists", '%s "%s" already exists' % (qualified(res), name),
                    {"name": name, "group": res.group, "kind": res.plural}
                    if res.group else {"name": name, "kind": res.plural})


def bad_request(msg):
    return ApiError(400, "BadRequest", msg)


# ---------------------------------------------------------------- resources

class Res:
    def __init__(self, group, version, plural, kind, namespaced, short=(), verbs=None,
                 extra_versions=()):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced, self.short = namespaced, list(short)
        self.verbs = verbs or ["create", "delete", "get", "list", "patch", "update", "watch"]
        self.versions = [version] + list(extra_versions)

    @property
    def api_version(self):
        return self.version if not self.group else "%s/%s" % (self.group, self.version)


RESOURCES = [
    Res("", "v1", "namespaces", "Namespace", False, ["ns"]),
    Res("", "v1", "nodes", "Node", False, ["no"]),
    Res("", "v1", "pods", "Pod", True, ["po"]),
    Res("apps", "v1", "daemonsets", "DaemonSet", True, ["ds"]),
    Res("apps", "v1", "replicasets", "ReplicaSet", True, ["rs"]),
    Res("apps", "v1", "statefulsets", "StatefulSet", True, ["sts"]),
    Res("apps", "v1", "deployments", "Deployment", True, ["deploy"]),
    Res("batch", "v1", "jobs", "Job", True, []),
    Res("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"]),
    Res("coordination.k8s.io", "v1", "leases", "Lease", True, []),
]
BY_GP = {(r.group, r.plural): r for r in RESOURCES}
GROUP_VERSIONS = {"apps": ["v1"], "batch": ["v1"], "policy": ["v1", "v1beta1"],
                  "coordination.k8s.io": ["v1"]}


def res_for(group, version, plural):
    r = BY_GP.get((group, plural))
    if r is None:
        return None
    if group == "policy" and version == "v1beta1":
        return r  # served at both versions, same shape for what we use
    return r if version == r.version else None


# ---------------------------------------------------------------- state

def tolerated(taint, tolerations):
    """Does one of the pod's tolerations tolerate this taint (core/v1 rules)?"""
    for t in tolerations or ():
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t["key"] == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


class State:
    def __init__(self):
        self.rv = 1000
        self.objs = {}  # (group, plural) -> {(ns, name): obj}
        for r in RESOURCES:
            self.objs[(r.group, r.plural)] = {}
        self.created = now_ts()
        self.delete_delay = 0.5
        self.profile = "k3s"
        self.node_grace = 40.0
        self.ready_delay = 0.0
        self.tokens = {}  # extra bearer tokens -> "readonly" | "evict" | "admin"
        self.base_tokens = {}  # --extra-token: kept when a scenario is loaded
        self.apf = None  # {"reject": N, "retryAfter": S, "match": text}
        self.evict_delay = 0.0  # seconds each eviction takes to answer
        self.evictions_in_flight = 0
        self.max_evictions_in_flight = 0
        self.timers = []  # (deadline, fn): node lifecycle and delayed readiness
        self.node_sim = {}  # node name -> {"gen", "down"}: a kubelet that is away
        self.pending = []  # (deadline, group, plural, ns, name, uid)
        self.requests = []
        self.listeners = []
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.ensure_ns(ns)

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def table(self, group, plural):
        return self.objs[(group, plural)]

    def put(self, res, obj, new=False):
        md = obj.setdefault("metadata", {})
        if new:
            md.setdefault("uid", str(uuid.uuid4()))
            md.setdefault("creationTimestamp", now_ts())
        md["resourceVersion"] = self.next_rv()
        obj["apiVersion"] = res.api_version
        obj["kind"] = res.kind
        key = (md.get("namespace", "") if res.namespaced else "", md["name"])
        self.table(res.group, res.plural)[key] = obj
        if res.namespaced:
            self.ensure_ns(md.get("namespace", "default"))
        return obj

    def ensure_ns(self, ns):
        t = self.objs[("", "namespaces")]
        if ("", ns) not in t:
            self.rv += 1
            t[("", ns)] = {"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": ns, "uid": str(uuid.uuid4()),
                                        "resourceVersion": str(self.rv),
                                        "creationTimestamp": now_ts(),
                                        "labels": {"kubernetes.io/metadata.name": ns}},
                           "spec": {"finalizers": ["kubernetes"]},
                           "status": {"phase": "Active"}}

    # -- scenario loading
    def load(self, sc):
        for k in self.objs:
            self.objs[k] = {}
        self.pending = []
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.ensure_ns(ns)
        self.timers = []
        self.node_sim = {}
        self.apf = None
        if "deleteDelay" in sc:
            self.delete_delay = float(sc["deleteDelay"])
        if sc.get("profile") in ("k3s", "kubeadm"):
            self.profile = sc["profile"]
        if "nodeMonitorGracePeriod" in sc:
            self.node_grace = float(sc["nodeMonitorGracePeriod"])
        if "readyDelay" in sc:
            self.ready_delay = float(sc["readyDelay"])
        self.evict_delay = float(sc.get("evictDelay", 0))
        self.max_evictions_in_flight = 0
        self.tokens = dict(self.base_tokens, **(sc.get("tokens") or {}))
        for n in sc.get("nodes", []):
            self.add_node(n)
        owners = {}
        for p in sc.get("pods", []):
            o = p.get("owner")
            if o:
                key = (o["kind"], p.get("namespace", "default"), o["name"])
                owners.setdefault(key, []).append(p)
        for (kind, ns, name), pods in owners.items():
            self.add_owner(kind, ns, name, pods)
        for p in sc.get("pods", []):
            self.add_pod(p)
        for b in sc.get("pdbs", []):
            self.add_pdb(b)
        for le in sc.get("leases", []):
            self.add_lease(le)

    def add_node(self, n):
        name = n["name"]
        labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                  "beta.kubernetes.io/arch": "amd64"}
        for role in n.get("roles", []):
            labels["node-role.kubernetes.io/%s" % role] = "true"
        labels.update(n.get("labels", {}))
        ver = n.get("kubeletVersion", "v1.31.4")
        idx = len(self.table("", "nodes")) + 1
        ip = n.get("internalIP", "10.0.0.%d" % (10 + idx))
        node = {"metadata": {"name": name, "labels": labels,
                             "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {"podCIDR": "10.42.%d.0/24" % idx, "podCIDRs": ["10.42.%d.0/24" % idx]},
                "status": {
                    "conditions": [],
                    "addresses": [{"type": "InternalIP", "address": ip},
                                  {"type": "Hostname", "address": name}],
                    "nodeInfo": {"machineID": uuid.uuid4().hex, "systemUUID": str(uuid.uuid4()),
                                 "bootID": str(uuid.uuid4()), "kernelVersion": "6.1.0-28-amd64",
                                 "osImage": "Debian GNU/Linux 12 (bookworm)",
                                 "containerRuntimeVersion": "containerd://1.7.23",
                                 "kubeletVersion": ver, "kubeProxyVersion": ver,
                                 "operatingSystem": "linux", "architecture": "amd64"},
                    "capacity": {"cpu": "4", "memory": "8131000Ki", "pods": "110"},
                    "allocatable": {"cpu": "4", "memory": "8131000Ki", "pods": "110"},
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}
        if n.get("unschedulable"):
            node["spec"]["unschedulable"] = True
        taints = [dict(t) for t in n.get("taints", [])]
        if self.profile == "kubeadm" and "control-plane" in n.get("roles", []) \
                and "taints" not in n:
            taints.append({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})
        if taints:
            node["spec"]["taints"] = taints
        self.set_ready(node, n.get("ready", True))
        self.sync_taints(node)
        self.put(BY_GP[("", "nodes")], node, new=True)

    @staticmethod
    def set_ready(node, ready):
        ts = now_ts()
        conds = [
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
             "message": "kubelet has sufficient memory available"},
            {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
             "message": "kubelet has no disk pressure"},
            {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
             "message": "kubelet has sufficient PID available"},
            {"type": "Ready", "status": "True" if ready else "Unknown",
             "reason": "KubeletReady" if ready else "NodeStatusUnknown",
             "message": "kubelet is posting ready status" if ready
             else "Kubelet stopped posting node status."}]
        for c in conds:
            c["lastHeartbeatTime"] = ts
            c["lastTransitionTime"] = ts
        node["status"]["conditions"] = conds

    @staticmethod
    def sync_taints(node):
        taints = [t for t in node["spec"].get("taints", [])
                  if t.get("key") != "node.kubernetes.io/unschedulable"]
        if node["spec"].get("unschedulable"):
            taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
                           "timeAdded": now_ts()})
        if taints:
            node["spec"]["taints"] = taints
        else:
            node["spec"].pop("taints", None)

    def add_owner(self, kind, ns, name, pods):
        plural = {"ReplicaSet": "replicasets", "DaemonSet": "daemonsets",
                  "StatefulSet": "statefulsets", "Job": "jobs",
                  "Deployment": "deployments"}.get(kind)
        if plural is None:
            return
        res = BY_GP[("batch" if kind == "Job" else "apps", plural)]
        labels = dict(pods[0].get("labels", {"app": name}))
        obj = {"metadata": {"name": name, "namespace": ns, "labels": labels, "generation": 1},
               "spec": {"selector": {"matchLabels": labels},
                        "template": {"metadata": {"labels": labels},
                                     "spec": {"containers": [{"name": "main",
                                                              "image": "registry.k8s.io/pause:3.9"}]}}},
               "status": {}}
        if kind in ("ReplicaSet", "StatefulSet", "Deployment"):
            obj["spec"]["replicas"] = len(pods)
            obj["status"] = {"replicas": len(pods), "readyReplicas": len(pods),
                             "availableReplicas": len(pods), "observedGeneration": 1}
        if kind == "DaemonSet":
            obj["status"] = {"currentNumberScheduled": len(pods), "desiredNumberScheduled": len(pods),
                             "numberReady": len(pods), "numberAvailable": len(pods),
                             "updatedNumberScheduled": len(pods), "numberMisscheduled": 0,
                             "observedGeneration": 1}
        if kind == "StatefulSet":
            obj["spec"]["serviceName"] = name
        self.put(res, obj, new=True)

    def owner_obj(self, kind, ns, name):
        plural = {"ReplicaSet": "replicasets", "DaemonSet": "daemonsets",
                  "StatefulSet": "statefulsets", "Job": "jobs"}.get(kind)
        if not plural:
            return None
        return self.table("batch" if kind == "Job" else "apps", plural).get((ns, name))

    def add_pod(self, p, uid=None):
        ns = p.get("namespace", "default")
        name = p["name"]
        labels = dict(p.get("labels", {}))
        md = {"name": name, "namespace": ns, "labels": labels, "annotations": {}}
        if uid:
            md["uid"] = uid
        o = p.get("owner")
        if o:
            oo = self.owner_obj(o["kind"], ns, o["name"])
            if not labels and oo:
                labels.update(oo["spec"]["selector"]["matchLabels"])
            md["ownerReferences"] = [{
                "apiVersion": "batch/v1" if o["kind"] == "Job" else "apps/v1",
                "kind": o["kind"], "name": o["name"],
                "uid": oo["metadata"]["uid"] if oo else str(uuid.uuid4()),
                "controller": True, "blockOwnerDeletion": True}]
            if o["kind"] == "ReplicaSet":
                md["generateName"] = o["name"] + "-"
        if p.get("mirror"):
            md["annotations"]["kubernetes.io/config.mirror"] = uuid.uuid4().hex
            md["annotations"]["kubernetes.io/config.source"] = "file"
            md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": p.get("node"),
                                      "uid": self.node_uid(p.get("node")), "controller": True}]
        vols = [{"name": "kube-api-access", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}]
        if p.get("emptyDir"):
            vols.append({"name": "scratch", "emptyDir": {}})
        spec = {"containers": [{"name": "main", "image": p.get("image", "registry.k8s.io/pause:3.9")}],
                "volumes": vols, "restartPolicy": "Always",
                "tolerations": [dict(t) for t in p.get("tolerations", [])],
                "terminationGracePeriodSeconds": int(p.get("terminationGracePeriodSeconds", 30)),
                "schedulerName": "default-scheduler", "priority": 0}
        if p.get("node"):
            spec["nodeName"] = p["node"]
        phase = p.get("phase", "Running" if p.get("node") else "Pending")
        ready = p.get("ready", phase == "Running")
        st = {"phase": phase, "qosClass": "BestEffort"}
        if p.get("node"):
            st["hostIP"] = self.node_ip(p["node"])
            st["podIP"] = "10.42.%d.%d" % (random.randint(0, 9), random.randint(2, 250))
            st["startTime"] = now_ts()
            st["conditions"] = [{"type": t, "status": "True" if (ready or t == "PodScheduled") else "False",
                                 "lastTransitionTime": now_ts()}
                                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
            st["containerStatuses"] = [{"name": "main", "ready": bool(ready), "restartCount": 0,
                                        "image": spec["containers"][0]["image"], "imageID": "",
                                        "started": phase == "Running",
                                        "state": {"running": {"startedAt": now_ts()}}
                                        if phase == "Running" else
                                        {"terminated": {"exitCode": 0, "reason": "Completed"}}
                                        if phase == "Succeeded" else {"waiting": {"reason": "ContainerCreating"}}}]
        else:
            st["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": "0/%d nodes are available." % len(self.table("", "nodes")),
                                 "lastTransitionTime": now_ts()}]
        if p.get("terminatingFor"):
            # Terminating for that many seconds already, and held there by a
            # finalizer nobody removes (a kubelet that is gone, say).
            md["deletionTimestamp"] = (datetime.datetime.now(datetime.timezone.utc) -
                                       datetime.timedelta(seconds=float(p["terminatingFor"]))
                                       ).strftime("%Y-%m-%dT%H:%M:%SZ")
            md["deletionGracePeriodSeconds"] = 30
            md["finalizers"] = ["example.com/held"]
        pod = {"metadata": md, "spec": spec, "status": st}
        return self.put(BY_GP[("", "pods")], pod, new=True)

    def node_uid(self, name):
        n = self.table("", "nodes").get(("", name))
        return n["metadata"]["uid"] if n else str(uuid.uuid4())

    def node_ip(self, name):
        n = self.table("", "nodes").get(("", name))
        if not n:
            return "10.0.0.1"
        for a in n["status"]["addresses"]:
            if a["type"] == "InternalIP":
                return a["address"]
        return "10.0.0.1"

    def add_pdb(self, b):
        sel = dict(b.get("selector", {}))
        if "matchLabels" not in sel and "matchExpressions" not in sel:
            sel = {"matchLabels": sel}  # the short form: {app: web}
        spec = {"selector": sel}
        for k in ("minAvailable", "maxUnavailable", "unhealthyPodEvictionPolicy"):
            if k in b:
                spec[k] = b[k]
        obj = {"metadata": {"name": b["name"], "namespace": b.get("namespace", "default"),
                            "generation": 1},
               "spec": spec, "status": {}}
        self.put(BY_GP[("policy", "poddisruptionbudgets")], obj, new=True)

    def add_lease(self, le):
        obj = {"metadata": {"name": le["name"], "namespace": le.get("namespace", "kube-system")},
               "spec": {k: v for k, v in le.items() if k not in ("name", "namespace")}}
        self.put(BY_GP[("coordination.k8s.io", "leases")], obj, new=True)

    # -- PDB arithmetic (the disruption controller's, simplified)
    @staticmethod
    def pod_ready(pod):
        for c in pod.get("status", {}).get("conditions", []):
            if c["type"] == "Ready":
                return c["status"] == "True"
        return False

    @staticmethod
    def selector_matches(sel, lab):
        """A metav1.LabelSelector: matchLabels and matchExpressions (In,
        NotIn, Exists, DoesNotExist). policy/v1: an empty selector selects
        every pod of the namespace."""
        for k, v in (sel.get("matchLabels") or {}).items():
            if lab.get(k) != v:
                return False
        for e in sel.get("matchExpressions") or []:
            k, op, vals = e["key"], e["operator"], e.get("values") or []
            if op == "In" and lab.get(k) not in vals:
                return False
            if op == "NotIn" and k in lab and lab[k] in vals:
                return False
            if op == "Exists" and k not in lab:
                return False
            if op == "DoesNotExist" and k in lab:
                return False
        return True

    def pdb_pods(self, pdb):
        sel = pdb["spec"].get("selector") or {}
        ns = pdb["metadata"]["namespace"]
        out = []
        for (pns, _), p in self.table("", "pods").items():
            if pns != ns or "deletionTimestamp" in p["metadata"]:
                continue
            if self.selector_matches(sel, p["metadata"].get("labels", {})):
                out.append(p)
        return out

    @staticmethod
    def int_or_percent(v, total, round_up):
        if isinstance(v, str) and v.endswith("%"):
            x = int(v[:-1]) * total / 100.0
            return int(-(-x // 1)) if round_up else int(x)
        return int(v)

    def pdb_status(self, pdb):
        pods = self.pdb_pods(pdb)
        expected = len(pods)
        healthy = sum(1 for p in pods if self.pod_ready(p))
        spec = pdb["spec"]
        if "minAvailable" in spec:
            desired = self.int_or_percent(spec["minAvailable"], expected, True)
        elif "maxUnavailable" in spec:
            desired = max(0, expected - self.int_or_percent(spec["maxUnavailable"], expected, True))
        else:
            desired = expected
        allowed = max(0, healthy - desired)
        return {"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": healthy,
                "desiredHealthy": desired, "expectedPods": expected,
                "conditions": [{"type": "DisruptionAllowed",
                                "status": "True" if allowed > 0 else "False",
                                "reason": "SufficientPods" if allowed > 0 else "InsufficientPods",
                                "message": "", "observedGeneration": 1,
                                "lastTransitionTime": self.created}]}

    def refresh_pdbs(self):
        for pdb in self.table("policy", "poddisruptionbudgets").values():
            pdb["status"] = self.pdb_status(pdb)

    # -- deletion and controllers
    def begin_delete(self, pod, grace):
        md = pod["metadata"]
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        if "deletionTimestamp" not in md:
            md["deletionTimestamp"] = now_ts()
            md["deletionGracePeriodSeconds"] = grace
            md["resourceVersion"] = self.next_rv()
        delay = min(float(grace), self.delete_delay)
        if pod["status"].get("phase") in ("Succeeded", "Failed") or not pod["spec"].get("nodeName"):
            delay = 0
        self.pending.append((time.monotonic() + delay, md["namespace"], md["name"], md["uid"]))

    def reap(self):
        t = time.monotonic()
        due = [p for p in self.pending if p[0] <= t]
        self.pending = [p for p in self.pending if p[0] > t]
        for _, ns, name, uid in due:
            pods = self.table("", "pods")
            pod = pods.get((ns, name))
            if not pod or pod["metadata"]["uid"] != uid:
                continue
            if pod["metadata"].get("finalizers"):
                continue  # held until its finalizers are gone (never, here)
            del pods[(ns, name)]
            self.rv += 1
            self.replace_pod(pod)

    def pick_node(self, exclude, tolerations=()):
        counts = {}
        for p in self.table("", "pods").values():
            nn = p["spec"].get("nodeName")
            if nn:
                counts[nn] = counts.get(nn, 0) + 1
        cands = []
        for (_, name), n in self.table("", "nodes").items():
            if name == exclude or n["spec"].get("unschedulable"):
                continue
            if not all(tolerated(t, tolerations) for t in n["spec"].get("taints", [])
                       if t.get("effect") in ("NoSchedule", "NoExecute")):
                continue
            ready = any(c["type"] == "Ready" and c["status"] == "True"
                        for c in n["status"]["conditions"])
            if ready:
                cands.append((counts.get(name, 0), name))
        cands.sort()
        return cands[0][1] if cands else None

    def replace_pod(self, old):
        md = old["metadata"]
        if "kubernetes.io/config.mirror" in md.get("annotations", {}):
            return
        refs = [r for r in md.get("ownerReferences", []) if r.get("controller")]
        if not refs:
            return
        ref = refs[0]
        ns = md["namespace"]
        owner = self.owner_obj(ref["kind"], ns, ref["name"])
        if owner is None:
            return
        base = {"namespace": ns, "labels": md.get("labels", {}),
                "owner": {"kind": ref["kind"], "name": ref["name"]},
                "tolerations": old["spec"].get("tolerations", []),
                "emptyDir": any("emptyDir" in v for v in old["spec"].get("volumes", [])),
                "terminationGracePeriodSeconds": old["spec"].get("terminationGracePeriodSeconds", 30)}
        if ref["kind"] == "ReplicaSet":
            while True:
                name = "%s-%s" % (ref["name"], rand_suffix())
                if (ns, name) not in self.table("", "pods"):
                    break
            base.update(name=name, node=self.pick_node(old["spec"].get("nodeName"),
                                                       base["tolerations"]))
        elif ref["kind"] == "StatefulSet":
            base.update(name=md["name"], node=self.pick_node(old["spec"].get("nodeName"),
                                                             base["tolerations"]))
        elif ref["kind"] == "DaemonSet":
            base.update(name="%s-%s" % (ref["name"], rand_suffix()), node=old["spec"].get("nodeName"))
        else:
            return  # a Job's finished pod is not re-created
        if self.ready_delay > 0 and base.get("node"):
            base["ready"] = False
        pod = self.add_pod(base)
        if self.ready_delay > 0 and base.get("node"):
            key = (ns, pod["metadata"]["name"])
            uid = pod["metadata"]["uid"]
            self.after(self.ready_delay, lambda: self.make_ready(key, uid))

    def after(self, delay, fn):
        self.timers.append((time.monotonic() + delay, fn))

    def run_timers(self):
        t = time.monotonic()
        due = [x for x in self.timers if x[0] <= t]
        self.timers = [x for x in self.timers if x[0] > t]
        for _, fn in sorted(due, key=lambda x: x[0]):
            fn()

    def make_ready(self, key, uid):
        pod = self.table("", "pods").get(key)
        if not pod or pod["metadata"]["uid"] != uid:
            return
        for c in pod["status"].get("conditions", []):
            c["status"] = "True"
            c["lastTransitionTime"] = now_ts()
        for cs in pod["status"].get("containerStatuses", []):
            cs["ready"] = True
        pod["metadata"]["resourceVersion"] = self.next_rv()

    # -- node lifecycle: a kubelet (or k3s) that stops posting status
    def node_down(self, name, down, reboot):
        """The node's kubelet stops for `down` seconds. The node lifecycle
        controller marks it Unknown once node_grace has passed with no
        heartbeat; a reboot brings a new bootID when the node is back."""
        sim = self.node_sim.setdefault(name, {"gen": 0})
        sim["gen"] += 1
        sim["down"] = True
        gen = sim["gen"]

        def node_if_current():
            n = self.table("", "nodes").get(("", name))
            return n if n is not None and self.node_sim.get(name, {}).get("gen") == gen else None

        def grace_over():
            n = node_if_current()
            if n is not None and self.node_sim[name]["down"]:
                self.set_ready(n, False)
                n["metadata"]["resourceVersion"] = self.next_rv()

        def back():
            n = node_if_current()
            if n is None:
                return
            self.node_sim[name]["down"] = False
            if reboot:
                n["status"]["nodeInfo"]["bootID"] = str(uuid.uuid4())
            self.set_ready(n, True)
            n["metadata"]["resourceVersion"] = self.next_rv()

        self.after(self.node_grace, grace_over)
        if down is not None:
            self.after(float(down), back)

    # -- a normalized dump for tests
    def dump(self):
        self.refresh_pdbs()
        nodes = {}
        for (_, name), n in sorted(self.table("", "nodes").items()):
            nodes[name] = {
                "unschedulable": bool(n["spec"].get("unschedulable")),
                "taints": [t["key"] for t in n["spec"].get("taints", [])],
                "ready": any(c["type"] == "Ready" and c["status"] == "True"
                             for c in n["status"]["conditions"]),
                "kubeletVersion": n["status"]["nodeInfo"]["kubeletVersion"],
                "bootID": n["status"]["nodeInfo"]["bootID"],
                "labels": n["metadata"].get("labels", {})}
        pods = []
        for (ns, name), p in sorted(self.table("", "pods").items()):
            refs = [r for r in p["metadata"].get("ownerReferences", []) if r.get("controller")]
            pods.append({"namespace": ns, "name": name, "uid": p["metadata"]["uid"],
                         "node": p["spec"].get("nodeName"),
                         "owner": "%s/%s" % (refs[0]["kind"], refs[0]["name"]) if refs else None,
                         "mirror": "kubernetes.io/config.mirror" in p["metadata"].get("annotations", {}),
                         "phase": p["status"].get("phase"),
                         "terminating": "deletionTimestamp" in p["metadata"]})
        pdbs = {"%s/%s" % k: v["status"] for k, v in self.table("policy", "poddisruptionbudgets").items()}
        leases = {"%s/%s" % k: {"spec": v["spec"], "resourceVersion": v["metadata"]["resourceVersion"]}
                  for k, v in self.table("coordination.k8s.io", "leases").items()}
        return {"profile": self.profile, "max_evictions_in_flight": self.max_evictions_in_flight,
                "nodes": nodes, "pods": pods, "pdbs": pdbs, "leases": leases,
                "listeners": [{"address": l.address, "state": l.state} for l in self.listeners],
                "pending_deletions": len(self.pending)}


STATE = State()


def reaper():
    while True:
        time.sleep(0.05)
        with LOCK:
            STATE.reap()
            STATE.run_timers()


# ---------------------------------------------------------------- selectors

def parse_selector(s):
    """'a=b,c!=d,e' -> [(key, op, value)]; ops: =, !=, exists, !exists."""
    out = []
    if not s:
        return out
    for part in s.split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            k, v = part.split("!=", 1)
            out.append((k.strip(), "!=", v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            out.append((k.strip(), "=", v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            out.append((k.strip(), "=", v.strip()))
        elif part.startswith("!"):
            out.append((part[1:], "!exists", None))
        else:
            out.append((part, "exists", None))
    return out


def field_value(obj, path):
    cur = obj
    for p in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(p)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def matches(sel, get):
    for k, op, v in sel:
        val = get(k)
        if op == "=" and val != v:
            return False
        if op == "!=" and val == v:
            return False
        if op == "exists" and val is None:
            return False
        if op == "!exists" and val is not None:
            return False
    return True


# ---------------------------------------------------------------- patches

def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


def json_pointer_parts(path):
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json_patch(doc, ops):
    for op in ops:
        parts = json_pointer_parts(op["path"])
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1]
        kind = op["op"]
        if kind == "test":
            cur = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if cur != op.get("value"):
                raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request")
        elif kind in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif kind == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                parent.pop(last, None)
        else:
            raise bad_request("json patch op %r not supported by kubesim" % kind)
    return doc


# ---------------------------------------------------------------- protobuf (DeleteOptions only)

def pb_fields(buf):
    """Yields (field number, wire type, value) of a protobuf message."""
    i = 0

    def varint():
        nonlocal i
        shift = val = 0
        while True:
            b = buf[i]
            i += 1
            val |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return val
    while i < len(buf):
        key = varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            yield num, wt, varint()
        elif wt == 2:
            ln = varint()
            yield num, wt, buf[i:i + ln]
            i += ln
        elif wt == 1:
            yield num, wt, buf[i:i + 8]
            i += 8
        elif wt == 5:
            yield num, wt, buf[i:i + 4]
            i += 4
        else:
            raise bad_request("protobuf: unsupported wire type %d" % wt)


def decode_delete_options_pb(buf):
    """runtime.Unknown{raw: DeleteOptions{gracePeriodSeconds=1, preconditions=2{uid=1}}}."""
    raw = b""
    for num, wt, val in pb_fields(buf):
        if num == 2 and wt == 2:
            raw = val
    out = {}
    for num, wt, val in pb_fields(raw):
        if num == 1 and wt == 0:
            if val >= 1 << 63:
                val -= 1 << 64
            out["gracePeriodSeconds"] = val
        elif num == 2 and wt == 2:
            for n2, w2, v2 in pb_fields(val):
                if n2 == 1 and w2 == 2:
                    out["preconditions"] = {"uid": v2.decode()}
    return out


# ---------------------------------------------------------------- tables

def node_status_text(n):
    ready = "Unknown"
    for c in n["status"].get("conditions", []):
        if c["type"] == "Ready":
            ready = {"True": "Ready", "False": "NotReady"}.get(c["status"], "NotReady")
    if n["spec"].get("unschedulable"):
        ready += ",SchedulingDisabled"
    return ready


def node_roles(n):
    roles = sorted(k.split("/", 1)[1] for k in n["metadata"].get("labels", {})
                   if k.startswith("node-role.kubernetes.io/"))
    return ",".join(roles) if roles else "<none>"


def pod_status_text(p):
    if "deletionTimestamp" in p["metadata"]:
        return "Terminating"
    phase = p["status"].get("phase", "Pending")
    if phase == "Succeeded":
        return "Completed"
    if phase == "Failed":
        return "Error"
    if phase == "Pending" and p["spec"].get("nodeName"):
        return "ContainerCreating"
    return phase


def col(name, typ="string", fmt="", prio=0, desc=""):
    return {"name": name, "type": typ, "format": fmt, "description": desc or name, "priority": prio}


def table_for(res, items):
    if res.plural == "nodes":
        cols = [col("Name", fmt="name"), col("Status"), col("Roles"), col("Age"), col("Version"),
                col("Internal-IP", prio=1), col("External-IP", prio=1), col("OS-Image", prio=1),
                col("Kernel-Version", prio=1), col("Container-Runtime", prio=1)]

        def row(n):
            ni = n["status"]["nodeInfo"]
            addrs = {a["type"]: a["address"] for a in n["status"].get("addresses", [])}
            return [n["metadata"]["name"], node_status_text(n), node_roles(n),
                    age(n["metadata"].get("creationTimestamp")), ni["kubeletVersion"],
                    addrs.get("InternalIP", "<none>"), addrs.get("ExternalIP", "<none>"),
                    ni["osImage"], ni["kernelVersion"], ni["containerRuntimeVersion"]]
    elif res.plural == "pods":
        cols = [col("Name", fmt="name"), col("Ready"), col("Status"), col("Restarts", "string"),
                col("Age"), col("IP", prio=1), col("Node", prio=1), col("Nominated Node", prio=1),
                col("Readiness Gates", prio=1)]

        def row(p):
            cs = p["status"].get("containerStatuses", [])
            ready = sum(1 for c in cs if c.get("ready"))
            return [p["metadata"]["name"], "%d/%d" % (ready, len(p["spec"]["containers"])),
                    pod_status_text(p), "0", age(p["metadata"].get("creationTimestamp")),
                    p["status"].get("podIP", "<none>"), p["spec"].get("nodeName", "<none>"),
                    "<none>", "<none>"]
    elif res.plural == "poddisruptionbudgets":
        cols = [col("Name", fmt="name"), col("Min Available"), col("Max Unavailable"),
                col("Allowed Disruptions", "integer"), col("Age")]

        def row(b):
            st = STATE.pdb_status(b)
            return [b["metadata"]["name"], str(b["spec"].get("minAvailable", "N/A")),
                    str(b["spec"].get("maxUnavailable", "N/A")), st["disruptionsAllowed"],
                    age(b["metadata"].get("creationTimestamp"))]
    elif res.plural == "leases":
        cols = [col("Name", fmt="name"), col("Holder"), col("Age")]

        def row(le):
            return [le["metadata"]["name"], le["spec"].get("holderIdentity", ""),
                    age(le["metadata"].get("creationTimestamp"))]
    elif res.plural == "namespaces":
        cols = [col("Name", fmt="name"), col("Status"), col("Age")]

        def row(o):
            return [o["metadata"]["name"], o["status"]["phase"],
                    age(o["metadata"].get("creationTimestamp"))]
    else:
        cols = [col("Name", fmt="name"), col("Age")]

        def row(o):
            return [o["metadata"]["name"], age(o["metadata"].get("creationTimestamp"))]
    rows = []
    for it in items:
        rows.append({"cells": row(it),
                     "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                "metadata": it["metadata"]}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
            "columnDefinitions": cols, "rows": rows}


# ---------------------------------------------------------------- discovery

def api_resource_list(group, version):
    out = []
    for r in RESOURCES:
        if r.group != group or version not in (["v1", "v1beta1"] if group == "policy" else [r.version]):
            continue
        e = {"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
             "kind": r.kind, "verbs": r.verbs, "storageVersionHash": "sim%s" % r.kind[:6]}
        if r.short:
            e["shortNames"] = r.short
        out.append(e)
        if r.plural == "pods":
            out.append({"name": "pods/eviction", "singularName": "", "namespaced": True,
                        "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]})
            out.append({"name": "pods/status", "singularName": "", "namespaced": True,
                        "kind": "Pod", "verbs": ["get", "patch", "update"]})
        if r.plural == "nodes":
            out.append({"name": "nodes/status", "singularName": "", "namespaced": False,
                        "kind": "Node", "verbs": ["get", "patch", "update"]})
    gv = version if not group else "%s/%s" % (group, version)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def api_group_list():
    groups = []
    for g, vers in GROUP_VERSIONS.items():
        vs = [{"groupVersion": "%s/%s" % (g, v), "version": v} for v in vers]
        groups.append({"name": g, "versions": vs, "preferredVersion": vs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


# ---------------------------------------------------------------- HTTP

class Listener:
    def __init__(self, address, name):
        self.address, self.name, self.state = address, name, "ok"
        self.server = None
        self.thread = None


TOKEN = None
CA_FILE = None
SSL_CTX = None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubesim"
    listener = None  # set per server class
    control = False

    def log_message(self, fmt, *args):
        if os.environ.get("KUBESIM_LOG"):
            sys.stderr.write("kubesim: %s %s\n" % (self.address_string(), fmt % args))

    # -- plumbing
    def send_json(self, code, obj, ctype="application/json"):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_text(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body_json(self):
        raw = self.raw_body
        if not raw:
            return None
        if raw.startswith(b"k8s\x00"):
            # kubectl 1.33 sends DeleteOptions as protobuf; that is the only
            # protobuf body we decode (other kinds get 415 as a hint).
            if self.command == "DELETE":
                return decode_delete_options_pb(raw[4:])
            raise ApiError(415, "UnsupportedMediaType",
                           "kubesim decodes protobuf only for DeleteOptions; send JSON")
        try:
            return json.loads(raw)
        except ValueError:
            if yaml is not None:
                try:
                    return yaml.safe_load(raw)
                except yaml.YAMLError:
                    pass
            raise bad_request("couldn't get version/kind; json parse error: invalid body")

    def authorized(self):
        """The caller's role: "admin", "evict", "readonly", or None
        (anonymous)."""
        if self.control:
            return "admin"
        auth = self.headers.get("Authorization", "")
        if auth == "Bearer " + TOKEN:
            return "admin"
        if auth.startswith("Bearer ") and auth[7:] in STATE.tokens:
            return STATE.tokens[auth[7:]]
        try:
            if self.connection.getpeercert():
                return "admin"  # verified against our CA by the TLS layer
        except (AttributeError, ValueError):
            pass
        return None

    def forbid(self, verb, res, sub, ns, name):
        """RBAC: a read-only token gets and lists; "evict" may also do
        what a drain does. Anything else is the apiserver's 403."""
        role = self.role
        if role == "admin":
            return
        if verb in ("get", "list", "watch"):
            return
        resource = res.plural + ("/" + sub if sub else "")
        if role == "evict" and (resource, verb) in (("pods/eviction", "create"),
                                                    ("pods", "delete"), ("nodes", "patch"),
                                                    ("nodes", "update")):
            return
        user = "system:serviceaccount:kube-system:%s" % (role or "anonymous")
        where = ' in the namespace "%s"' % ns if ns else " at the cluster scope"
        msg = '%s%s is forbidden: User "%s" cannot %s resource "%s" in API group "%s"%s' % (
            qualified(res), ' "%s"' % name if name else "", user, verb, resource, res.group,
            where)
        raise ApiError(403, "Forbidden", msg,
                       {"name": name or "", "group": res.group, "kind": resource})

    def unauthorized(self):
        return self.send_json(401, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                    "status": "Failure", "message": "Unauthorized",
                                    "reason": "Unauthorized", "code": 401})

    def throttled(self, path):
        """API Priority and Fairness, on demand (POST /sim/apf)."""
        apf = STATE.apf
        if not apf or apf.get("reject", 0) <= 0 or apf.get("match", "") not in path:
            return False
        apf["reject"] -= 1
        st = ApiError(429, "TooManyRequests",
                      "Too many requests, please try again later.",
                      {"causes": [{"reason": "TooManyRequests"}],
                       "retryAfterSeconds": int(apf.get("retryAfter", 1))}).status()
        body = json.dumps(st).encode()
        self.send_response(429)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Retry-After", str(int(apf.get("retryAfter", 1))))
        self.send_header("X-Kubernetes-PF-FlowSchema-UID", "sim-flowschema")
        self.end_headers()
        self.wfile.write(body)
        return True

    def do_GET(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def dispatch(self):
        # The body is read first, whatever the answer: an answer given before
        # reading it (401, 403, 429) would leave it to be parsed as the next
        # request on this keep-alive connection.
        n = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(n) if n > 0 else b""
        u = urllib.parse.urlsplit(self.path)
        path = u.path
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query, keep_blank_values=True).items()}
        with LOCK:
            STATE.requests.append({"method": self.command, "path": self.path, "t": time.time(),
                                   "accept": self.headers.get("Accept", ""),
                                   "content_type": self.headers.get("Content-Type", ""),
                                   "listener": self.listener.name if self.listener else "control"})
            del STATE.requests[:-500]
        try:
            self.role = self.authorized()
            public = path in ("/readyz", "/livez", "/healthz", "/version") or \
                path.startswith(("/readyz/", "/livez/"))
            # kubeadm allows anonymous requests, which system:public-info-viewer
            # lets read these; k3s runs without anonymous auth (k3s-io/k3s#3576).
            if self.role is None and not (public and STATE.profile == "kubeadm"):
                return self.unauthorized()
            if public and path != "/version":
                return self.health(path, q)
            if path.startswith("/sim/") or path == "/sim":
                if self.role != "admin":
                    raise ApiError(403, "Forbidden", "the simulator's control needs the admin token")
                return self.sim(path, q)
            if self.control:
                raise ApiError(404, "NotFound", "the control port serves /sim/ only")
            with LOCK:
                if self.throttled(path):
                    return
            return self.api(path, q)
        except ApiError as e:
            self.send_json(e.code, e.status())
        except (KeyError, ValueError, TypeError, IndexError) as e:
            self.send_json(400, bad_request("kubesim: bad request: %r" % (e,)).status())

    # -- /readyz and friends: per listener
    def health(self, path, q):
        st = self.listener.state if self.listener else "ok"
        if st == "hang":
            time.sleep(30)
            return self.send_text(503, "hung\n")
        checks = ["ping", "log", "etcd", "etcd-readiness", "informer-sync", "poststarthook/start-apiextensions-informers"]
        if st == "fail":
            lines = ["[+]ping ok", "[+]log ok", "[-]etcd failed: reason withheld",
                     "[+]informer-sync ok"]
            return self.send_text(500, "\n".join(lines) + "\nreadyz check failed\n"
                                  if path.startswith("/readyz") else
                                  "\n".join(lines) + "\nlivez check failed\n")
        if "verbose" in q:
            return self.send_text(200, "".join("[+]%s ok\n" % c for c in checks) +
                                  ("readyz check passed\n" if path.startswith("/readyz") else "livez check passed\n"))
        return self.send_text(200, "ok")

    # -- the control API
    def sim(self, path, q):
        parts = [p for p in path.split("/") if p][1:]
        m = self.command
        with LOCK:
            if parts == ["state"] and m == "GET":
                return self.send_json(200, STATE.dump())
            if parts == ["requests"] and m == "GET":
                return self.send_json(200, STATE.requests)
            if parts == ["scenario"] and m in ("POST", "PUT"):
                STATE.load(self.body_json() or {})
                return self.send_json(200, STATE.dump())
            if parts == ["listeners"] and m == "GET":
                return self.send_json(200, [{"index": i, "name": l.name, "address": l.address,
                                             "state": l.state} for i, l in enumerate(STATE.listeners)])
            if len(parts) == 2 and parts[0] == "nodes" and m == "POST":
                return self.sim_node(parts[1], self.body_json() or {})
            if parts == ["pods"] and m == "POST":
                pod = STATE.add_pod(self.body_json() or {})
                return self.send_json(201, pod)
            if parts == ["apf"] and m == "POST":
                STATE.apf = dict(self.body_json() or {})
                return self.send_json(200, STATE.apf)
            if len(parts) == 2 and parts[0] == "listeners" and m == "POST":
                body = self.body_json() or {}
                lst = None
                for i, l in enumerate(STATE.listeners):
                    if parts[1] in (str(i), l.name, l.address):
                        lst = l
                if lst is None:
                    raise ApiError(404, "NotFound", "no listener %s" % parts[1])
                want = body.get("state", "ok")
                if want not in ("ok", "fail", "hang", "down"):
                    raise bad_request("state must be ok, fail, hang or down")
                set_listener_state(lst, want)
                return self.send_json(200, {"name": lst.name, "address": lst.address, "state": lst.state})
        raise ApiError(404, "NotFound", "no such simulator path %s" % path)

    def sim_node(self, name, body):
        node = STATE.table("", "nodes").get(("", name))
        if node is None:
            raise not_found(BY_GP[("", "nodes")], name)
        if "ready" in body:
            STATE.node_sim.pop(name, None)  # an explicit state ends a restart in progress
            STATE.set_ready(node, bool(body["ready"]))
        for kind in ("restart", "reboot"):
            how = body.get(kind)
            if isinstance(how, dict):
                STATE.node_down(name, how.get("down"), kind == "reboot")
        if "kubeletVersion" in body:
            node["status"]["nodeInfo"]["kubeletVersion"] = body["kubeletVersion"]
            node["status"]["nodeInfo"]["kubeProxyVersion"] = body["kubeletVersion"]
        if body.get("reboot") is True:
            node["status"]["nodeInfo"]["bootID"] = str(uuid.uuid4())
        if "unschedulable" in body:
            if body["unschedulable"]:
                node["spec"]["unschedulable"] = True
            else:
                node["spec"].pop("unschedulable", None)
            STATE.sync_taints(node)
        node["metadata"]["resourceVersion"] = STATE.next_rv()
        return self.send_json(200, node)

    # -- the Kubernetes API
    def api(self, path, q):
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            return self.send_json(200, {"major": "1", "minor": GIT_VERSION.split(".")[1],
                                        "gitVersion": GIT_VERSION, "gitCommit": "0" * 40,
                                        "gitTreeState": "clean", "buildDate": "2024-12-10T00:00:00Z",
                                        "goVersion": "go1.22.9", "compiler": "gc",
                                        "platform": "linux/amd64"})
        if path == "/api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                        "serverAddressByClientCIDRs": [
                                            {"clientCIDR": "0.0.0.0/0",
                                             "serverAddress": self.listener.address}]})
        if path == "/apis":
            return self.send_json(200, api_group_list())
        if parts and parts[0] in ("openapi", "swagger.json", "swaggerapi"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts and parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        elif parts and parts[0] == "apis" and len(parts) == 2 and parts[1] in GROUP_VERSIONS:
            vs = [{"groupVersion": "%s/%s" % (parts[1], v), "version": v}
                  for v in GROUP_VERSIONS[parts[1]]]
            return self.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", "name": parts[1],
                                        "versions": vs, "preferredVersion": vs[0]})
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if group and version not in GROUP_VERSIONS.get(group, []):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return self.send_json(200, api_resource_list(group, version))
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        res = res_for(group, version, rest[0])
        if res is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        slow = sub == "eviction" and STATE.evict_delay > 0
        if slow:
            # A slow eviction answer, outside the lock: several clients'
            # evictions can then be in flight at once (max_evictions_in_flight).
            with LOCK:
                STATE.evictions_in_flight += 1
                STATE.max_evictions_in_flight = max(STATE.max_evictions_in_flight,
                                                    STATE.evictions_in_flight)
            time.sleep(STATE.evict_delay)
        try:
            with LOCK:
                STATE.refresh_pdbs()
                return self.resource(res, ns, name, sub, q)
        finally:
            if slow:
                with LOCK:
                    STATE.evictions_in_flight -= 1

    def wants_table(self):
        return "as=Table" in self.headers.get("Accept", "")

    def resource(self, res, ns, name, sub, q):
        m = self.command
        self.dry_run = q.get("dryRun") == "All"
        verb = {"GET": "list" if name is None else "get", "HEAD": "get", "POST": "create",
                "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(m, m.lower())
        self.forbid(verb, res, sub, ns, name)
        if name is None:
            if m == "GET":
                return self.list(res, ns, q)
            if m == "POST":
                return self.create(res, ns, self.body_json() or {})
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        key = (ns or "" if res.namespaced else "", name)
        if res.namespaced and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        table = STATE.table(res.group, res.plural)
        if sub == "eviction" and res.plural == "pods" and m == "POST":
            return self.evict(res, ns, name, self.body_json() or {})
        if sub not in (None, "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        obj = table.get(key)
        if m == "GET":
            if obj is None:
                raise not_found(res, name)
            if self.wants_table():
                return self.send_json(200, table_for(res, [obj]))
            return self.send_json(200, obj)
        if m == "PUT":
            return self.update(res, key, obj, self.body_json() or {})
        if m == "PATCH":
            return self.patch(res, key, obj, name)
        if m == "DELETE":
            if obj is None:
                raise not_found(res, name)
            body = self.body_json() or {}
            grace = body.get("gracePeriodSeconds", q.get("gracePeriodSeconds"))
            pre = (body.get("preconditions") or {}).get("uid")
            if pre and pre != obj["metadata"]["uid"]:
                raise ApiError(409, "Conflict",
                               'Operation cannot be fulfilled on %s "%s": Precondition failed: UID in precondition: %s, UID in object meta: %s'
                               % (qualified(res), name, pre, obj["metadata"]["uid"]))
            if self.dry_run or "All" in (body.get("dryRun") or []):
                return self.send_json(200, obj)
            if res.plural == "pods":
                STATE.begin_delete(obj, None if grace is None else int(grace))
                STATE.reap()
                return self.send_json(200, obj)
            del table[key]
            return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                        "status": "Success",
                                        "details": {"name": name, "group": res.group,
                                                    "kind": res.plural, "uid": obj["metadata"]["uid"]}})
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def list(self, res, ns, q):
        items = []
        lsel = parse_selector(q.get("labelSelector", ""))
        fsel = parse_selector(q.get("fieldSelector", ""))
        for (ons, oname), o in sorted(STATE.table(res.group, res.plural).items()):
            if res.namespaced and ns is not None and ons != ns:
                continue
            labels = o["metadata"].get("labels", {})
            if not matches(lsel, lambda k: labels.get(k)):
                continue
            if not matches(fsel, lambda k: field_value(o, k)):
                continue
            items.append(o)
        cont = ""
        start = q.get("continue")
        if start:
            try:
                tok = json.loads(base64.urlsafe_b64decode(start.encode() + b"=="))
                after = tuple(tok["after"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "BadRequest", "continue key is not valid: illegal base64 data")
            items = [o for o in items
                     if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > after]
        limit = int(q.get("limit") or 0)
        if limit > 0 and len(items) > limit:
            items = items[:limit]
            last = items[-1]["metadata"]
            cont = base64.urlsafe_b64encode(json.dumps(
                {"after": [last.get("namespace", ""), last["name"]], "rv": STATE.rv}).encode()
            ).decode().rstrip("=")
        md = {"resourceVersion": str(STATE.rv)}
        if cont:
            md["continue"] = cont
        if self.wants_table():
            t = table_for(res, items)
            t["metadata"] = md
            return self.send_json(200, t)
        return self.send_json(200, {"kind": res.kind + "List", "apiVersion": res.api_version,
                                    "metadata": md, "items": items})

    def create(self, res, ns, body):
        md = body.setdefault("metadata", {})
        if res.namespaced:
            if ns is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if md.get("namespace") not in (None, ns):
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            md["namespace"] = ns
        if not md.get("name"):
            if md.get("generateName"):
                md["name"] = md["generateName"] + rand_suffix()
            else:
                raise ApiError(422, "Invalid", "%s.%s \"\" is invalid: metadata.name: Required value: name or generateName is required"
                               % (res.kind, res.group or "core"))
        key = (ns or "" if res.namespaced else "", md["name"])
        if key in STATE.table(res.group, res.plural):
            raise already_exists(res, md["name"])
        if md.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        for k in ("uid", "creationTimestamp", "deletionTimestamp"):
            md.pop(k, None)
        body.setdefault("spec", {})
        obj = STATE.put(res, body, new=True)
        return self.send_json(201, obj)

    def update(self, res, key, obj, body):
        if obj is None:
            raise not_found(res, key[1])
        md = body.get("metadata") or {}
        if md.get("name", key[1]) != key[1]:
            raise bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                              % (md.get("name"), key[1]))
        rv = md.get("resourceVersion")
        if not rv:
            if res.plural == "leases":  # leases require it (unconditional update not allowed)
                raise ApiError(422, "Invalid", 'Lease.coordination.k8s.io "%s" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update' % key[1])
        elif rv != obj["metadata"]["resourceVersion"]:
            raise conflict(res, key[1])
        new = copy.deepcopy(body)
        new["metadata"] = copy.deepcopy(obj["metadata"])
        for k in ("labels", "annotations"):
            if k in md:
                new["metadata"][k] = md[k]
        if res.plural == "nodes":
            STATE.sync_taints(new)
        STATE.put(res, new)
        return self.send_json(200, new)

    def patch(self, res, key, obj, name):
        if obj is None:
            raise not_found(res, name)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        body = self.body_json()
        if body is None:
            raise bad_request("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json")
        new = copy.deepcopy(obj)
        if ctype == "application/json-patch+json":
            new = json_patch(new, body)
        elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            pre = (body.get("metadata") or {}).get("resourceVersion")
            if pre and pre != obj["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            new = merge_patch(new, body)
        else:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json")
        for k in ("uid", "creationTimestamp", "name", "namespace"):
            if k in obj["metadata"]:
                new["metadata"][k] = obj["metadata"][k]
        if res.plural == "nodes":
            if new.get("spec", {}).get("unschedulable") is False:
                new["spec"].pop("unschedulable")
            STATE.sync_taints(new)
        if self.dry_run:
            return self.send_json(200, new)  # validated, not stored
        STATE.put(res, new)
        return self.send_json(200, new)

    def evict(self, res, ns, name, body):
        pods = STATE.table("", "pods")
        pod = pods.get((ns, name))
        if pod is None:
            raise not_found(res, name)
        if (body.get("metadata") or {}).get("name", name) != name:
            raise bad_request("name in URL does not match name in Eviction object")
        opts = body.get("deleteOptions") or {}
        grace = opts.get("gracePeriodSeconds")
        dry = self.dry_run or "All" in (opts.get("dryRun") or [])
        ok = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        if "deletionTimestamp" in pod["metadata"]:
            return self.send_json(201, ok)
        if pod["status"].get("phase") in ("Succeeded", "Failed") or not pod["spec"].get("nodeName"):
            if not dry:
                STATE.begin_delete(pod, grace)
                STATE.reap()
            return self.send_json(201, ok)
        lab = pod["metadata"].get("labels", {})
        pdbs = [b for (bns, _), b in STATE.table("policy", "poddisruptionbudgets").items()
                if bns == ns and STATE.selector_matches(b["spec"].get("selector") or {}, lab)]
        if len(pdbs) > 1:
            raise ApiError(500, "InternalError",
                           "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.")
        if pdbs:
            st = STATE.pdb_status(pdbs[0])
            policy = pdbs[0]["spec"].get("unhealthyPodEvictionPolicy", "IfHealthyBudget")
            # An unready pod: AlwaysAllow evicts it; IfHealthyBudget only while
            # the application is not already disrupted (currentHealthy >=
            # desiredHealthy); otherwise the budget decides as for any pod.
            unready_ok = not STATE.pod_ready(pod) and (
                policy == "AlwaysAllow" or st["currentHealthy"] >= st["desiredHealthy"])
            if not unready_ok and st["disruptionsAllowed"] <= 0:
                raise ApiError(429, "TooManyRequests",
                               "Cannot evict pod as it would violate the pod's disruption budget.",
                               {"causes": [{"reason": "DisruptionBudget",
                                            "message": "The disruption budget %s needs %d healthy pods and has %d currently"
                                            % (pdbs[0]["metadata"]["name"], st["desiredHealthy"],
                                               st["currentHealthy"])}]})
        if dry:
            return self.send_json(201, ok)  # the budget was checked; nothing changes
        STATE.begin_delete(pod, grace)
        STATE.reap()
        STATE.refresh_pdbs()
        return self.send_json(201, ok)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, handler, family, tls):
        self.address_family = family
        self.tls = tls
        self.conns = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls:
            # The handshake happens on the first read, in the handler's thread,
            # so a slow client never blocks accept().
            sock = SSL_CTX.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self.conns_lock:
            self.conns.add(sock)
        return sock, addr

    def shutdown_request(self, request):
        with self.conns_lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def drop_all(self):
        """Close every open connection (a master going down)."""
        with self.conns_lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        pass  # clients hanging up are normal


def split_hostport(s):
    if s.startswith("["):
        host, _, port = s[1:].partition("]:")
    else:
        host, _, port = s.rpartition(":")
    return host or "127.0.0.1", int(port)


def start_server(addr_text, handler_base, tls, listener=None, control=False):
    host, port = split_hostport(addr_text)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    h = type("H", (handler_base,), {"listener": listener, "control": control})
    srv = Server((host, port), h, fam, tls)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    real_port = srv.server_address[1]
    text = "[%s]:%d" % (host, real_port) if fam == socket.AF_INET6 else "%s:%d" % (host, real_port)
    return srv, text


def set_listener_state(lst, want):
    if want == "down" and lst.server is not None:
        srv = lst.server
        lst.server = None
        srv.shutdown()
        srv.server_close()
        srv.drop_all()
    elif want != "down" and lst.server is None:
        lst.server, _ = start_server(lst.address, Handler, True, lst)
    lst.state = want


# ---------------------------------------------------------------- certificates

def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_pki(d):
    """CA, server cert (127.0.0.1, ::1, localhost) and an admin client cert."""
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", ca_key, "-out", ca_crt, "-days", "3650",
            "-subj", "/CN=kubesim-ca")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("[srv]\nsubjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kubernetes,"
                "DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n"
                "[cli]\nextendedKeyUsage=clientAuth\n")
    for name, subj, sect in (("server", "/CN=kube-apiserver", "srv"),
                             ("admin", "/O=system:masters/CN=admin", "cli")):
        key, csr, crt = (os.path.join(d, name + s) for s in (".key", ".csr", ".crt"))
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", csr, "-subj", subj)
        openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
                "-out", crt, "-days", "3650", "-extfile", ext, "-extensions", sect)
    return d


def b64file(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def write_kubeconfig(path, server, pki, token, auth):
    user = {}
    if auth in ("token", "both"):
        user["token"] = token
    if auth in ("cert", "both"):
        user["client-certificate-data"] = b64file(os.path.join(pki, "admin.crt"))
        user["client-key-data"] = b64file(os.path.join(pki, "admin.key"))
    kc = {"apiVersion": "v1", "kind": "Config", "preferences": {},
          "clusters": [{"name": "kubesim", "cluster": {
              "certificate-authority-data": b64file(os.path.join(pki, "ca.crt")),
              "server": "https://%s" % server}}],
          "users": [{"name": "kubesim-admin", "user": user}],
          "contexts": [{"name": "kubesim", "context": {"cluster": "kubesim", "user": "kubesim-admin"}}],
          "current-context": "kubesim"}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        if yaml is not None:
            yaml.safe_dump(kc, f, default_flow_style=False, sort_keys=False)
        else:
            json.dump(kc, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_file(path):
    with open(path) as f:
        text = f.read()
    if path.endswith(".json") or yaml is None:
        return json.loads(text)
    return yaml.safe_load(text)


def main():
    global TOKEN, SSL_CTX
    ap = argparse.ArgumentParser(description="Kubernetes apiserver simulator (tests only)")
    ap.add_argument("--listen", action="append", default=[],
                    help="HTTPS address, repeatable (one per simulated master); port 0 = ephemeral")
    ap.add_argument("--control", help="plain HTTP control address (loopback only)")
    ap.add_argument("--kubeconfig-out", help="write a kubeconfig here")
    ap.add_argument("--kubeconfig-server", help="server address written in the kubeconfig "
                    "(default: the first --listen), e.g. the lbd VIP")
    ap.add_argument("--auth", choices=("token", "cert", "both"), default="token",
                    help="credentials written in the kubeconfig")
    ap.add_argument("--scenario", help="YAML or JSON scenario to load at start")
    ap.add_argument("--pki-dir", help="where to keep the CA and certificates (default: a temp dir)")
    ap.add_argument("--token", default=None, help="bearer token (default: random)")
    ap.add_argument("--delete-delay", type=float, default=0.5,
                    help="seconds a deleted pod stays Terminating (capped by its grace period)")
    ap.add_argument("--ready-file", help="write {listen: [...], control: ...} here once serving")
    ap.add_argument("--profile", choices=("k3s", "kubeadm"), default="k3s",
                    help="k3s: no anonymous auth (401 on /readyz without credentials); "
                    "kubeadm: anonymous /readyz, control-plane nodes tainted NoSchedule")
    ap.add_argument("--extra-token", action="append", default=[], metavar="TOKEN=ROLE",
                    help="another bearer token: readonly, evict or admin (repeatable)")
    ap.add_argument("--node-monitor-grace", type=float, default=40.0,
                    help="seconds a node whose kubelet stopped stays Ready (scale down in tests)")
    ap.add_argument("--ready-delay", type=float, default=0.0,
                    help="seconds a re-created pod stays unready")
    args = ap.parse_args()
    if not args.listen:
        args.listen = ["127.0.0.1:0"]
    for a in args.listen + ([args.control] if args.control else []):
        host, _ = split_hostport(a)
        if host not in ("127.0.0.1", "::1", "localhost"):
            ap.error("kubesim listens on loopback only: %s" % a)

    TOKEN = args.token or "".join(random.choice(string.ascii_letters + string.digits) for _ in range(32))
    pki = args.pki_dir or tempfile.mkdtemp(prefix="kubesim-pki-")
    os.makedirs(pki, exist_ok=True)
    if not os.path.exists(os.path.join(pki, "server.crt")):
        make_pki(pki)
    SSL_CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    SSL_CTX.load_cert_chain(os.path.join(pki, "server.crt"), os.path.join(pki, "server.key"))
    SSL_CTX.load_verify_locations(os.path.join(pki, "ca.crt"))
    SSL_CTX.verify_mode = ssl.CERT_OPTIONAL
    SSL_CTX.set_alpn_protocols(["http/1.1"])

    STATE.delete_delay = args.delete_delay
    STATE.profile = args.profile
    for t in args.extra_token:
        tok, _, role = t.partition("=")
        if role not in ("readonly", "evict", "admin"):
            ap.error("--extra-token TOKEN=ROLE: ROLE is readonly, evict or admin")
        STATE.base_tokens[tok] = role
    STATE.tokens = dict(STATE.base_tokens)
    STATE.node_grace = args.node_monitor_grace
    STATE.ready_delay = args.ready_delay
    if args.scenario:
        STATE.load(load_file(args.scenario))

    addrs = []
    for i, a in enumerate(args.listen):
        lst = Listener(a, "master-%d" % (i + 1))
        lst.server, lst.address = start_server(a, Handler, True, lst)
        STATE.listeners.append(lst)
        addrs.append(lst.address)
    ctl = None
    if args.control:
        _, ctl = start_server(args.control, Handler, False, None, control=True)
    threading.Thread(target=reaper, daemon=True).start()

    if args.kubeconfig_out:
        write_kubeconfig(args.kubeconfig_out, args.kubeconfig_server or addrs[0], pki, TOKEN, args.auth)
    info = {"listen": addrs, "control": ctl, "token": TOKEN, "pki": pki,
            "ca": os.path.join(pki, "ca.crt"), "pid": os.getpid()}
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f)
        os.replace(tmp, args.ready_file)
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
