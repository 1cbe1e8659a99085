"""Checks of deploy/ that need more than a shell: called by .ci/deploy-checks.

Each subcommand prints one line per thing it checked and exits 1 on the
first list of failures (all printed). Standard library and PyYAML only.
"""

import json
import math
import os
import re
import sys
import time
import urllib.parse
import urllib.request

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
K8S = os.path.join(ROOT, "deploy", "kubernetes")
SPEC_GATE_METRICS = ["cutover_gate_tripped", "cutover_gate_checks_total",
                     "cutover_gate_trips_total"]


class Checker:
    def __init__(self, title):
        self.title = title
        self.failures = []

    def ok(self, cond, what):
        print(("  ok    " if cond else "  FAIL  ") + what)
        if not cond:
            self.failures.append(what)
        return cond

    def done(self):
        if self.failures:
            print(f"{self.title}: {len(self.failures)} failed", file=sys.stderr)
            sys.exit(1)
        print(f"{self.title}: all passed")


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def duration_s(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", str(text))
    if not m:
        raise ValueError(f"not a duration: {text}")
    n, unit = int(m.group(1)), m.group(2)
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


# --- Kubernetes ---------------------------------------------------------------
#
# deploy/kubernetes/ is a kustomize layout: components/ (the sidecar patch and
# the two scrape styles) and overlays/<consumer>/ (one per consumer). CI
# renders every overlay with `kubectl kustomize` and checks the output here.

OVERLAYS = os.path.join(K8S, "overlays")
RULES = os.path.join(ROOT, "deploy", "prometheus", "rules.yaml")
PROMETHEUSRULE = os.path.join(K8S, "components", "scrape-podmonitor", "prometheusrule.yaml")
SIDECAR_IMAGE = "registry.example.com/platform/cutover"
# Kinds kubernetes-validate has no schema for (CRDs): checked here instead.
CRD_KINDS = {("monitoring.coreos.com/v1", "PodMonitor"): "PodMonitor CRD schema (fields used, strict)",
             ("monitoring.coreos.com/v1", "PrometheusRule"): "PrometheusRule structure (strict) and "
             "spec.groups == deploy/prometheus/rules.yaml's groups"}
RISK_RANK = {"low": 0, "medium": 1, "high": 2}
STREAMING_MODES = ("canary", "streaming", "streaming_only")   # what `cutover fleet` counts as streaming


def overlay_names():
    return sorted(n for n in os.listdir(OVERLAYS)
                  if os.path.isfile(os.path.join(OVERLAYS, n, "kustomization.yaml")))


def cmd_overlays():
    """Prints the overlay names, one a line (for the shell's render loop)."""
    for n in overlay_names():
        print(n)


def prometheusrule_text():
    """The PrometheusRule manifest: rules.yaml's `groups:` block, indented
    under `spec:` as text (comments kept), then parsed back to prove that
    spec.groups is exactly rules.yaml's groups."""
    with open(RULES) as f:
        text = f.read()
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or list(doc) != ["groups"]:
        raise SystemExit(f"{RULES}: expected one top-level key, groups")
    lines = text.splitlines()
    at = [i for i, line in enumerate(lines) if re.match(r"groups:\s*(#.*)?$", line)]
    if len(at) != 1:
        raise SystemExit(f"{RULES}: expected one `groups:` line at column 0")
    body = "\n".join(("  " + line) if line.strip() else "" for line in lines[at[0]:])
    out = (
        "# GENERATED from deploy/prometheus/rules.yaml: do not edit. Regenerate with\n"
        "#   python3 .ci/deploy_checks.py prometheusrule --write\n"
        "# (.ci/deploy-checks fails when this file and rules.yaml differ).\n"
        "# If your Prometheus selects rules by label (its ruleSelector), add that\n"
        "# label in the overlay; load these rules once per Prometheus.\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        "  name: cutover\n"
        "  labels:\n"
        "    app.kubernetes.io/name: cutover\n"
        "spec:\n" + body + "\n")
    back = yaml.safe_load(out)
    if back["spec"]["groups"] != doc["groups"]:
        raise SystemExit("internal: the indented groups do not parse back to rules.yaml's groups")
    return out


def cmd_prometheusrule(*args):
    """Prints the PrometheusRule made from rules.yaml; --write replaces the
    checked-in components/scrape-podmonitor/prometheusrule.yaml with it."""
    text = prometheusrule_text()
    if args == ("--write",):
        with open(PROMETHEUSRULE, "w") as f:
            f.write(text)
        print(f"wrote {os.path.relpath(PROMETHEUSRULE, ROOT)} from {os.path.relpath(RULES, ROOT)}")
    elif args:
        raise SystemExit("usage: deploy_checks.py prometheusrule [--write]")
    else:
        sys.stdout.write(text)


def cmd_prometheusrule_check():
    import difflib
    c = Checker("PrometheusRule")
    want = prometheusrule_text()
    have = open(PROMETHEUSRULE).read() if os.path.exists(PROMETHEUSRULE) else ""
    if want != have:
        sys.stdout.writelines(difflib.unified_diff(
            have.splitlines(True), want.splitlines(True),
            os.path.relpath(PROMETHEUSRULE, ROOT), "generated from rules.yaml"))
    c.ok(want == have, f"{os.path.relpath(PROMETHEUSRULE, ROOT)} is what `prometheusrule` prints from "
         "rules.yaml (regenerate: python3 .ci/deploy_checks.py prometheusrule --write)")
    c.done()


def cargo_version():
    m = re.search(r'^version\s*=\s*"([^"]+)"', open(os.path.join(ROOT, "Cargo.toml")).read(), re.M)
    return m.group(1) if m else None


def cmd_k8s_lint(rendered_dir, out_dir):
    """Checks every overlay's rendered output (RENDERED_DIR/<overlay>.yaml);
    writes OUT_DIR/<overlay>.builtin.yaml (the documents kubernetes-validate
    has schemas for), OUT_DIR/<overlay>.cutover.yaml (the embedded config)
    and OUT_DIR/builtin.count (how many documents went to the former)."""
    c = Checker("kubernetes overlays")
    names = sorted(f[:-5] for f in os.listdir(rendered_dir) if f.endswith(".yaml"))
    c.ok(len(names) >= 1, f"rendered overlays: {', '.join(names)}")
    styles, by_dataset, builtin = {}, {}, 0
    for name in names:
        print(f"  --- overlay {name}")
        docs = load_all(os.path.join(rendered_dir, name + ".yaml"))
        style, cfg, kept = lint_overlay(c, name, docs, out_dir)
        builtin += kept
        styles[name] = style
        if cfg:
            for r in cfg.get("routes", []):
                ds = r.get("dataset", r.get("name"))
                by_dataset.setdefault(ds, {}).setdefault(cfg.get("consumer"), {"risk": cfg.get("risk"), "modes": []})
                by_dataset[ds][cfg.get("consumer")]["modes"].append(r.get("mode", "batch"))
    print("  --- across overlays")
    c.ok("annotations" in styles.values() and "podmonitor" in styles.values(),
         f"both scrape styles are shown ({', '.join(f'{n}: {s}' for n, s in styles.items())})")
    # The migration guide's risk order, as `cutover fleet` judges it: a
    # consumer reads streaming when every route of the dataset is canary,
    # streaming or streaming_only; a higher-risk one must not while a
    # lower-risk consumer of the same dataset still reads batch.
    for ds, consumers in sorted(by_dataset.items()):
        on = {n: all(m in STREAMING_MODES for m in v["modes"]) for n, v in consumers.items()}
        bad = [(s, b) for s in consumers for b in consumers
               if on[s] and not on[b]
               and RISK_RANK.get(consumers[s]["risk"], 3) > RISK_RANK.get(consumers[b]["risk"], 3)]
        shown = ", ".join(f"{n} ({v['risk']}: {'/'.join(v['modes'])})" for n, v in sorted(consumers.items(),
                          key=lambda kv: RISK_RANK.get(kv[1]["risk"], 3)))
        c.ok(not bad, f"dataset {ds}: risk order kept: {shown}"
             + "".join(f"; {s} reads streaming while lower-risk {b} reads batch" for s, b in bad))
    with open(os.path.join(out_dir, "builtin.count"), "w") as f:
        f.write(f"{builtin}\n")
    c.done()


def lint_overlay(c, name, docs, out_dir):
    """Returns (scrape style, the embedded config, documents kept for
    kubernetes-validate)."""
    deps = [d for d in docs if d.get("kind") == "Deployment"]
    if not c.ok(len(deps) == 1, f"{name}: renders one Deployment"):
        return None, None, 0
    dep = deps[0]
    dep_name = dep["metadata"]["name"]
    tmpl = dep["spec"]["template"]
    spec = tmpl["spec"]
    tmpl_labels = tmpl["metadata"].get("labels", {})
    ann = tmpl["metadata"].get("annotations", {})
    c.ok(tmpl_labels.get("cutover-sidecar") == "true", f"{name}: the pod is labelled cutover-sidecar: \"true\"")
    sel = dep["spec"].get("selector", {}).get("matchLabels", {})
    c.ok(sel and all(tmpl_labels.get(k) == v for k, v in sel.items()) and "cutover-sidecar" not in sel
         and "cutover-scrape" not in sel,
         f"{name}: the Deployment's selector {sel} is the consumer's own (immutable; the patch leaves it)")

    sidecars = [x for x in spec.get("initContainers", []) if x["name"] == "cutover"]
    if not c.ok(len(sidecars) == 1, f"{name}: cutover is an initContainers entry"):
        return None, None, 0
    s = sidecars[0]
    c.ok(s.get("restartPolicy") == "Always", f"{name}: cutover has restartPolicy: Always (native sidecar)")
    c.ok(all(x["name"] != "cutover" for x in spec["containers"]), f"{name}: cutover is not also a regular container")
    c.ok(len(spec["containers"]) >= 1, f"{name}: the consumer's own container is still there")
    ports = {p["name"]: p["containerPort"] for p in s.get("ports", [])}
    admin_port = ports.get("cutover-admin")
    c.ok(admin_port is not None, f"{name}: the sidecar names its admin port cutover-admin")

    def probe(kind, path):
        p = s.get(kind, {}).get("httpGet", {})
        c.ok(p.get("path") == path and p.get("port") in ("cutover-admin", admin_port),
             f"{name}: {kind}: GET {path} on the admin port")
    probe("startupProbe", "/readyz")
    probe("readinessProbe", "/readyz")
    probe("livenessProbe", "/healthz")

    image = s.get("image", "")
    version = cargo_version()
    digest = re.fullmatch(re.escape(SIDECAR_IMAGE) + r"(:[\w.-]+)?@sha256:[0-9a-f]{64}", image)
    c.ok(image == f"{SIDECAR_IMAGE}:{version}" or bool(digest),
         f"{name}: sidecar image {image} is the release of Cargo.toml's version {version} (or a digest)")

    args = s.get("args", [])
    c.ok(args[:1] == ["run"] and "-c" in args, f"{name}: the sidecar runs `cutover run -c FILE`")
    cfg_file = args[args.index("-c") + 1] if "-c" in args else ""
    data_dir = args[args.index("--data-dir") + 1] if "--data-dir" in args else None
    mounts = {m["name"]: m for m in s.get("volumeMounts", [])}
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    cfg_mounts = [m for m in mounts.values() if "configMap" in vols.get(m["name"], {})]
    c.ok(len(cfg_mounts) == 1, f"{name}: the config comes from one ConfigMap volume")
    cm = cfg_mounts[0] if cfg_mounts else {}
    c.ok("subPath" not in cm and "subPathExpr" not in cm,
         f"{name}: the ConfigMap is mounted as a directory (no subPath: kubelet would never update it)")
    c.ok(os.path.dirname(cfg_file) == cm.get("mountPath"),
         f"{name}: -c {cfg_file} is inside the ConfigMap mount {cm.get('mountPath')}")
    c.ok(cm.get("readOnly") is True, f"{name}: the config mount is read-only")
    data_mounts = [m for m in mounts.values() if "emptyDir" in vols.get(m["name"], {})]
    c.ok(len(data_mounts) == 1 and data_mounts[0]["mountPath"] == data_dir,
         f"{name}: --data-dir {data_dir} is an emptyDir mount")
    c.ok(data_mounts and vols[data_mounts[0]["name"]]["emptyDir"].get("sizeLimit") == "128Mi",
         f"{name}: the data emptyDir has sizeLimit 128Mi")
    cm_name = vols[cm["name"]]["configMap"]["name"] if cm else None

    sc = s.get("securityContext", {})
    c.ok(sc.get("runAsNonRoot") is True and isinstance(sc.get("runAsUser"), int) and sc["runAsUser"] > 0,
         f"{name}: sidecar: runAsNonRoot with a non-zero runAsUser, on the container")
    c.ok(sc.get("readOnlyRootFilesystem") is True, f"{name}: sidecar: readOnlyRootFilesystem")
    c.ok(sc.get("allowPrivilegeEscalation") is False, f"{name}: sidecar: allowPrivilegeEscalation false")
    c.ok(sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add"),
         f"{name}: sidecar: every capability dropped, none added")
    c.ok(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
         f"{name}: sidecar: seccompProfile RuntimeDefault, on the container")
    res = s.get("resources", {})
    c.ok(res.get("requests", {}).get("cpu") == "50m" and res.get("requests", {}).get("memory") == "32Mi"
         and res.get("limits", {}).get("memory") == "64Mi" and "cpu" not in res.get("limits", {}),
         f"{name}: sidecar resources: requests cpu 50m memory 32Mi, limits memory 64Mi, no CPU limit")
    grace = spec.get("terminationGracePeriodSeconds", 30)

    # The ConfigMap: named after the Deployment, no hash suffix, holds the file.
    cms = [d for d in docs if d.get("kind") == "ConfigMap"]
    c.ok(cm_name == f"{dep_name}-cutover", f"{name}: the sidecar mounts ConfigMap {cm_name} = <Deployment>-cutover "
         "(no hash suffix: an edit must not change the pod template)")
    mine = [d for d in cms if d["metadata"]["name"] == cm_name]
    cfg = None
    if c.ok(len(mine) == 1, f"{name}: the overlay renders the ConfigMap {cm_name} the Deployment mounts"):
        cmd = mine[0]
        c.ok(not cmd.get("immutable"), f"{name}: the ConfigMap is not immutable (the kubelet must update it)")
        key = os.path.basename(cfg_file)
        if c.ok(key in cmd.get("data", {}), f"{name}: the ConfigMap has the key {key}"):
            text = cmd["data"][key]
            with open(os.path.join(out_dir, name + ".cutover.yaml"), "w") as f:
                f.write(text)
            cfg = yaml.safe_load(text)
    if cfg:
        c.ok(cfg.get("consumer") == dep_name, f"{name}: consumer {cfg.get('consumer')} is the Deployment's name")
        c.ok(cfg.get("risk") in RISK_RANK, f"{name}: risk {cfg.get('risk')} is set")
        c.ok(str(cfg.get("admin", "")).endswith(f":{admin_port}") and not str(cfg["admin"]).startswith("127."),
             f"{name}: admin {cfg.get('admin')} is the container port, on all interfaces")
        c.ok(str(cfg.get("listen", "")).startswith("127.0.0.1:"),
             f"{name}: listen {cfg.get('listen')} is loopback (same pod)")
        sg = duration_s(cfg.get("shutdown_grace", "10s"))
        c.ok(grace > sg, f"{name}: terminationGracePeriodSeconds {grace} > shutdown_grace {sg:g}s")
        gated = [r["name"] for r in cfg.get("routes", []) if "gate" in r]
        if gated:
            sf = str(cfg.get("state_file", ""))
            c.ok(sf and (not sf.startswith("/") or sf.startswith(str(data_dir) + "/")),
                 f"{name}: gated route(s) {', '.join(gated)}: state_file {sf or '(none)'} is under --data-dir, "
                 "so a trip survives a restart")

    # Scrape: exactly one style.
    has_ann = any(k.startswith("prometheus.io/") for k in ann)
    pms = [d for d in docs if d.get("kind") == "PodMonitor"]
    prs = [d for d in docs if d.get("kind") == "PrometheusRule"]
    has_pm = bool(pms) or bool(prs) or "cutover-scrape" in tmpl_labels
    c.ok(has_ann != has_pm, f"{name}: exactly one scrape style (annotations: {has_ann}, PodMonitor: {has_pm})")
    style = "annotations" if has_ann else "podmonitor"
    if has_ann:
        c.ok(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(admin_port)
             and ann.get("prometheus.io/path") == "/metrics",
             f"{name}: prometheus.io/scrape|port|path annotations name port {admin_port} and /metrics")
    if has_pm:
        c.ok(len(pms) == 1 and len(prs) == 1 and tmpl_labels.get("cutover-scrape") == "podmonitor",
             f"{name}: one PodMonitor, one PrometheusRule, pod labelled cutover-scrape: podmonitor")
        for pm in pms:
            check_podmonitor(c, pm, tmpl_labels, ports)
        for pr in prs:
            check_prometheusrule(c, pr)

    kept = [d for d in docs if (d.get("apiVersion"), d.get("kind")) not in CRD_KINDS]
    for d in docs:
        why = CRD_KINDS.get((d.get("apiVersion"), d.get("kind")))
        if why:
            print(f"  NOT given to kubernetes-validate: {name}: {d['kind']} {d['metadata']['name']} "
                  f"({d['apiVersion']}) is a CRD kind it has no schema for (it would only warn: Couldn't find schema); checked above: {why}")
    with open(os.path.join(out_dir, name + ".builtin.yaml"), "w") as f:
        yaml.safe_dump_all(kept, f, sort_keys=False)
    return style, cfg, len(kept)


# The part of prometheus-operator's PodMonitor CRD (monitoring.coreos.com/v1)
# that components/scrape-podmonitor/podmonitor.yaml uses, strict: an unknown key is an error.
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
PODMONITOR_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}}},
            "additionalProperties": False},
        "spec": {"type": "object", "additionalProperties": False,
                 "required": ["selector", "podMetricsEndpoints"],
                 "properties": {
                     "jobLabel": {"type": "string"},
                     "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                     "namespaceSelector": {"type": "object"},
                     "selector": {"type": "object", "additionalProperties": False, "properties": {
                         "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                         "matchExpressions": {"type": "array"}}},
                     "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                         "type": "object", "additionalProperties": False,
                         "properties": {
                             "port": {"type": "string"},
                             "path": {"type": "string", "pattern": "^/"},
                             "scheme": {"enum": ["http", "https"]},
                             "interval": {"type": "string", "pattern": DURATION},
                             "scrapeTimeout": {"type": "string", "pattern": DURATION},
                             "honorLabels": {"type": "boolean"},
                             "relabelings": {"type": "array"},
                             "metricRelabelings": {"type": "array"}}}}}}}}


def check_crd_schema(c, doc, schema, what):
    """Validates `doc` against a CRD's schema, printing each error; False
    when jsonschema is missing (it comes with kubernetes-validate)."""
    try:
        import jsonschema  # kubernetes-validate depends on it
    except ImportError:
        c.ok(False, "jsonschema importable (it comes with kubernetes-validate: run inside its venv)")
        return False
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
    for e in errors:
        print(f"        {'/'.join(map(str, e.path))}: {e.message}")
    c.ok(not errors, what)
    return True


def check_podmonitor(c, pm, pod_labels, ports):
    if not check_crd_schema(c, pm, PODMONITOR_SCHEMA,
                            "PodMonitor validates against the operator CRD's schema (the fields used, strict)"):
        return
    sel = pm.get("spec", {}).get("selector", {}).get("matchLabels", {})
    c.ok(sel and all(pod_labels.get(k) == v for k, v in sel.items()),
         f"PodMonitor selector {sel} matches the Deployment's pod labels")
    # CutoverDown (deploy/prometheus/rules.yaml) finds a down target by the
    # target label cutover_sidecar="true": only podTargetLabels puts it there.
    c.ok("cutover-sidecar" in pm.get("spec", {}).get("podTargetLabels", [])
         and pod_labels.get("cutover-sidecar") == "true",
         "PodMonitor copies the pod label cutover-sidecar onto its targets (podTargetLabels), as CutoverDown needs")
    for ep in pm.get("spec", {}).get("podMetricsEndpoints", []):
        c.ok(ep.get("port") in ports, f"PodMonitor port {ep.get('port')} is a named port of the sidecar")
        c.ok(ep.get("path", "/metrics") == "/metrics", "PodMonitor scrapes /metrics")
        if "interval" in ep and "scrapeTimeout" in ep:
            c.ok(prom_duration(ep["scrapeTimeout"]) <= prom_duration(ep["interval"]),
                 "PodMonitor scrapeTimeout <= interval")


# The PrometheusRule CRD (monitoring.coreos.com/v1), strict: an unknown key
# is an error. kubernetes-validate has no schema for it either.
_RULE_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
PROMETHEUSRULE_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": PODMONITOR_SCHEMA["properties"]["metadata"],
        "spec": {"type": "object", "additionalProperties": False, "required": ["groups"], "properties": {
            "groups": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False, "required": ["name", "rules"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": {"type": "string", "pattern": DURATION},
                    "query_offset": {"type": "string", "pattern": DURATION},
                    "limit": {"type": "integer"},
                    "labels": _RULE_LABELS,
                    "partial_response_strategy": {"type": "string", "pattern": "^(?i)(abort|warn)?$"},
                    "rules": {"type": "array", "items": {
                        "type": "object", "additionalProperties": False, "required": ["expr"],
                        "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
                        "properties": {
                            "record": {"type": "string"},
                            "alert": {"type": "string"},
                            "expr": {"type": ["string", "integer"]},
                            "for": {"type": "string", "pattern": DURATION},
                            "keep_firing_for": {"type": "string", "pattern": DURATION},
                            "labels": _RULE_LABELS,
                            "annotations": _RULE_LABELS}}}}}}}}}}


def check_prometheusrule(c, pr):
    if not check_crd_schema(c, pr, PROMETHEUSRULE_SCHEMA,
                            "PrometheusRule validates against the operator CRD's schema (strict)"):
        return
    want = yaml.safe_load(open(RULES))["groups"]
    got = pr.get("spec", {}).get("groups")
    c.ok(got == want, f"PrometheusRule spec.groups are exactly deploy/prometheus/rules.yaml's groups "
         f"({len(want)} groups, {sum(len(g['rules']) for g in want)} rules)")


def prom_duration(text):
    total = 0
    for n, unit in re.findall(r"(\d+)(ms|y|w|d|h|m|s)", text):
        total += int(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800,
                           "y": 31536000}[unit]
    return total


# --- Containerfile ------------------------------------------------------------

INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
                "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def cmd_containerfile_lint(path):
    c = Checker("Containerfile")
    lines, buf = [], ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        lines.append(buf + line)
        buf = ""
    c.ok(not buf, "no continuation line left open")
    stages, final = [], None
    for line in lines:
        word, _, rest = line.strip().partition(" ")
        c.ok(word.upper() in INSTRUCTIONS and word == word.upper(), f"instruction {word} is known (upper case)")
        if word == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.I)
            c.ok(m is not None, f"FROM {rest} is `image [AS name]`")
            stages.append(m.group(2) if m else None)
        if word == "COPY":
            m = re.search(r"--from=(\S+)", rest)
            if m:
                c.ok(m.group(1) in stages[:-1], f"COPY --from={m.group(1)} names an earlier stage")
            else:
                srcs = [a for a in rest.split() if not a.startswith("--")][:-1]
                for src in srcs:
                    c.ok(os.path.exists(os.path.join(ROOT, src)), f"COPY source {src} exists in the repository")
        if word in ("ENTRYPOINT", "CMD"):
            try:
                v = json.loads(rest)
                c.ok(isinstance(v, list) and all(isinstance(x, str) for x in v), f"{word} is exec form (JSON array)")
            except ValueError:
                c.ok(False, f"{word} {rest} is exec form (JSON array)")
        if word == "USER":
            final = rest.strip()
    c.ok(len(stages) >= 2, f"multi-stage ({len(stages)} stages)")
    c.ok(final is not None and final.split(":")[0] not in ("0", "root"), f"the final stage runs as a non-root USER ({final})")
    ep = [line for line in lines if line.startswith("ENTRYPOINT")]
    c.ok(ep and json.loads(ep[-1].split(" ", 1)[1])[0].endswith("/cutover"), "ENTRYPOINT is cutover")
    c.done()


# --- Grafana dashboard --------------------------------------------------------

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan", "atan2"}


def dashboard_exprs(dash):
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))
    walk(dash.get("panels", []))
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append(("annotation " + a.get("name", "?"), a["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q or "")
        if m:
            out.append((f"variable {v['name']}", m.group(1)))
    return out


def substitute(expr):
    expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$__interval", "1m")
    return re.sub(r"\$\{?(consumer|dataset|route)\}?", ".*", expr)


def series_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\b(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def exported_names(metrics_txt):
    names = set()
    for line in open(metrics_txt):
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            names.add(m.group(1))
            if m.group(2) in ("histogram", "summary"):
                names |= {m.group(1) + s for s in ("_bucket", "_sum", "_count")}
    return names


def cmd_dashboard(dash_path, metrics_txt, rules_path, out_rules):
    c = Checker("Grafana dashboard")
    dash = json.load(open(dash_path))
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    c.ok(variables.get("datasource", {}).get("type") == "datasource"
         and variables["datasource"].get("query") == "prometheus", "variable datasource (Prometheus data sources)")
    for v in ("consumer", "dataset", "route"):
        c.ok(variables.get(v, {}).get("type") == "query", f"variable {v} (a label_values query)")
    rows = [p["title"] for p in dash["panels"] if p.get("type") == "row"]
    for want in ("safe to move the next consumer", "can batch be switched off", "proxy health"):
        c.ok(any(want in r.lower() for r in rows), f"row \"{want}?\" present")
    uids = {json.dumps(p.get("datasource")) for p in dash["panels"] if p.get("type") != "row"}
    c.ok(uids == {json.dumps({"type": "prometheus", "uid": "${datasource}"})}, "every panel uses ${datasource}")

    recorded = {r["record"] for g in yaml.safe_load(open(rules_path))["groups"] for r in g["rules"] if "record" in r}
    known = exported_names(metrics_txt) | set(SPEC_GATE_METRICS) | recorded | {"up"}
    print(f"  known series: {len(exported_names(metrics_txt))} names from the live /metrics, "
          f"{len(SPEC_GATE_METRICS)} SPEC gate names, {len(recorded)} recorded in rules.yaml")
    exprs = dashboard_exprs(dash)
    rules = []
    for i, (title, expr) in enumerate(exprs):
        for m in re.finditer(r"\b(rate|irate)\s*\(.*?\[([^\]]+)\]", expr):
            c.ok(m.group(2) == "$__rate_interval", f"{title}: {m.group(1)}() over $__rate_interval")
        unknown = sorted(series_names(expr) - known)
        c.ok(not unknown, f"{title}: names only exported or recorded series"
             + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        for sel in re.finditer(r"(cutover_\w+|consumer_\w*:\w+:\w+)(\{[^}]*\})?", expr):
            if sel.group(1) in known and title != "variable consumer":
                c.ok("$consumer" in (sel.group(2) or ""), f"{title}: {sel.group(1)} filtered by $consumer")
        rules.append({"record": f"dashboard:expr_{i}", "expr": substitute(expr)})
    with open(out_rules, "w") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, sort_keys=False)
    print(f"  {len(rules)} expressions written to {out_rules} for promtool")
    c.done()


# --- Live Prometheus ----------------------------------------------------------

def prom_get(base, path, **params):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{url}: {body}")
    return body["data"]


def poll(what, deadline_s, fn):
    """Calls fn until it returns something truthy or the deadline passes."""
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - Prometheus not up yet, etc.
            last = e
        time.sleep(0.5)
    raise SystemExit(f"FAIL: {what} within {deadline_s}s (last: {last})")


def cmd_prom_wait_up(base, job, deadline):
    poll(f"Prometheus scrapes job {job} (up == 1)", float(deadline),
         lambda: [r for r in prom_get(base, "/api/v1/query", query=f'up{{job="{job}"}} == 1')["result"]])
    print(f"  ok    Prometheus at {base} scrapes job {job}: up == 1")


def cmd_prom_records(base, rules_path, consumer, deadline):
    """Every recording rule yields a series for the consumer; the fallback and
    error ratios are numbers (traffic flowed while Prometheus scraped)."""
    c = Checker("recording rules on live data")
    records = [r["record"] for g in yaml.safe_load(open(rules_path))["groups"] for r in g["rules"] if "record" in r]
    must_be_number = {"consumer_dataset_route:cutover_streaming_chosen_reads:rate5m",
                      "consumer_dataset_route:cutover_fallback_ratio:ratio_rate5m",
                      "consumer_dataset_route_side:cutover_upstream_error_ratio:ratio_rate5m",
                      "consumer_dataset_route:cutover_batch_reads:increase1d"}
    end = time.monotonic() + float(deadline)
    for rec in records:
        def found():
            res = prom_get(base, "/api/v1/query", query=f'{rec}{{consumer="{consumer}"}}')["result"]
            if rec in must_be_number:
                res = [r for r in res if not math.isnan(float(r["value"][1]))]
            return res
        res = []
        while time.monotonic() < end:
            try:
                res = found()
            except Exception:  # noqa: BLE001
                res = []
            if res:
                break
            time.sleep(0.5)
        shown = ", ".join(f"{r['metric'].get('route', r['metric'].get('dataset', ''))}"
                          f"{'/' + r['metric']['side'] if 'side' in r['metric'] else ''}"
                          f"{'/' + r['metric']['reason'] if 'reason' in r['metric'] else ''}"
                          f"={float(r['value'][1]):.4g}" for r in res[:4])
        c.ok(bool(res), f"{rec}: {len(res)} series ({shown}{', ...' if len(res) > 4 else ''})"
             + (" [number required]" if rec in must_be_number else ""))
    c.done()


def cmd_prom_alert(base, name, want, deadline):
    """want: 'active' (pending or firing) or 'gone'."""
    def state():
        alerts = [a for a in prom_get(base, "/api/v1/alerts")["alerts"] if a["labels"].get("alertname") == name]
        if want == "active":
            return [a["state"] for a in alerts if a["state"] in ("pending", "firing")]
        return ["gone"] if not alerts else []
    got = poll(f"alert {name} {want}", float(deadline), state)
    print(f"  ok    alert {name}: {', '.join(got)}")


def cmd_prom_value(base, query, want, deadline):
    poll(f"{query} == {want}", float(deadline),
         lambda: [r for r in prom_get(base, "/api/v1/query", query=query)["result"]
                  if float(r["value"][1]) == float(want)])
    print(f"  ok    {query} == {want}")


def cmd_test_rules(src, dst):
    """A copy of rules.yaml for a live Prometheus: every `for` 1s, every group
    evaluated each second."""
    doc = yaml.safe_load(open(src))
    for g in doc["groups"]:
        g["interval"] = "1s"
        for r in g["rules"]:
            if "for" in r:
                r["for"] = "1s"
    with open(dst, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)


def cmd_free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


COMMANDS = {
    "overlays": cmd_overlays,
    "k8s-lint": cmd_k8s_lint,
    "prometheusrule": cmd_prometheusrule,
    "prometheusrule-check": cmd_prometheusrule_check,
    "containerfile-lint": cmd_containerfile_lint,
    "dashboard": cmd_dashboard,
    "test-rules": cmd_test_rules,
    "free-port": cmd_free_port,
    "prom-wait-up": cmd_prom_wait_up,
    "prom-records": cmd_prom_records,
    "prom-alert": cmd_prom_alert,
    "prom-value": cmd_prom_value,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
