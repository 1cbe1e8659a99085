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
PHASES = ["phase1-shadow", "phase2-first-consumer", "phase3-canary",
          "phase4-streaming-only", "rollback-batch"]
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

def phase_config(name):
    doc = load_all(os.path.join(K8S, "phases", name + ".yaml"))[0]
    return yaml.safe_load(doc["data"]["cutover.yaml"])


def cmd_extract_config(name, out):
    """Writes a phase ConfigMap's embedded cutover.yaml to OUT."""
    doc = load_all(os.path.join(K8S, "phases", name + ".yaml"))[0]
    with open(out, "w") as f:
        f.write(doc["data"]["cutover.yaml"])


def cmd_k8s_lint():
    c = Checker("kubernetes manifests")
    dep = load_all(os.path.join(K8S, "deployment.yaml"))
    c.ok(len(dep) == 1 and dep[0]["kind"] == "Deployment", "deployment.yaml is one Deployment")
    spec = dep[0]["spec"]["template"]["spec"]
    tmpl_labels = dep[0]["spec"]["template"]["metadata"]["labels"]
    ann = dep[0]["spec"]["template"]["metadata"].get("annotations", {})
    sidecars = [x for x in spec.get("initContainers", []) if x["name"] == "cutover"]
    c.ok(len(sidecars) == 1, "cutover is an initContainers entry")
    s = sidecars[0]
    c.ok(s.get("restartPolicy") == "Always", "cutover has restartPolicy: Always (native sidecar)")
    c.ok(all(x["name"] != "cutover" for x in spec["containers"]), "cutover is not also a regular container")
    ports = {p["name"]: p["containerPort"] for p in s.get("ports", [])}
    admin_port = ports.get("cutover-admin")
    c.ok(admin_port is not None, "the sidecar names its admin port cutover-admin")

    def probe(kind, path):
        p = s.get(kind, {}).get("httpGet", {})
        c.ok(p.get("path") == path and p.get("port") in ("cutover-admin", admin_port),
             f"{kind}: GET {path} on the admin port")
    probe("startupProbe", "/readyz")
    probe("readinessProbe", "/readyz")
    probe("livenessProbe", "/healthz")

    args = s.get("args", [])
    c.ok(args[:1] == ["run"] and "-c" in args, "the sidecar runs `cutover run -c FILE`")
    cfg_file = args[args.index("-c") + 1] if "-c" in args else ""
    data_dir = args[args.index("--data-dir") + 1] if "--data-dir" in args else None
    mounts = {m["name"]: m for m in s.get("volumeMounts", [])}
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    cfg_mounts = [m for m in mounts.values() if "configMap" in vols.get(m["name"], {})]
    c.ok(len(cfg_mounts) == 1, "the config comes from one ConfigMap volume")
    cm = cfg_mounts[0] if cfg_mounts else {}
    c.ok("subPath" not in cm and "subPathExpr" not in cm,
         "the ConfigMap is mounted as a directory (no subPath: kubelet would never update it)")
    c.ok(os.path.dirname(cfg_file) == cm.get("mountPath"), f"-c {cfg_file} is inside the ConfigMap mount {cm.get('mountPath')}")
    c.ok(cm.get("readOnly") is True, "the config mount is read-only")
    data_mounts = [m for m in mounts.values() if "emptyDir" in vols.get(m["name"], {})]
    c.ok(len(data_mounts) == 1 and data_mounts[0]["mountPath"] == data_dir,
         f"--data-dir {data_dir} is an emptyDir mount")
    cm_name = vols[cm["name"]]["configMap"]["name"] if cm else None

    sc = s.get("securityContext", {})
    psc = spec.get("securityContext", {})
    c.ok(sc.get("runAsNonRoot") is True and isinstance(sc.get("runAsUser"), int) and sc["runAsUser"] > 0,
         "sidecar: runAsNonRoot with a non-zero runAsUser")
    c.ok(sc.get("readOnlyRootFilesystem") is True, "sidecar: readOnlyRootFilesystem")
    c.ok(sc.get("allowPrivilegeEscalation") is False, "sidecar: allowPrivilegeEscalation false")
    c.ok(sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add"),
         "sidecar: every capability dropped, none added")
    c.ok(sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type") == "RuntimeDefault",
         "seccompProfile RuntimeDefault")
    res = s.get("resources", {})
    c.ok(res.get("requests", {}).get("cpu") == "50m" and res.get("requests", {}).get("memory") == "32Mi"
         and res.get("limits", {}).get("memory") == "64Mi",
         "sidecar resources: requests cpu 50m memory 32Mi, limits memory 64Mi")
    c.ok(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(admin_port)
         and ann.get("prometheus.io/path") == "/metrics",
         f"prometheus.io/scrape|port|path annotations name port {admin_port} and /metrics")
    grace = spec.get("terminationGracePeriodSeconds", 30)

    # Every phase: the same ConfigMap name, an admin address the kubelet and
    # Prometheus can reach, listen on loopback, grace above shutdown_grace,
    # and the routes and modes of config/<phase>.yaml.
    for name in PHASES:
        doc = load_all(os.path.join(K8S, "phases", name + ".yaml"))
        c.ok(len(doc) == 1 and doc[0]["kind"] == "ConfigMap" and doc[0]["metadata"]["name"] == cm_name,
             f"phases/{name}.yaml is the ConfigMap {cm_name} the Deployment mounts")
        c.ok(os.path.basename(cfg_file) in doc[0].get("data", {}),
             f"phases/{name}.yaml has the key {os.path.basename(cfg_file)}")
        cfg = phase_config(name)
        c.ok(str(cfg.get("admin", "")).endswith(f":{admin_port}") and not str(cfg["admin"]).startswith("127."),
             f"{name}: admin {cfg.get('admin')} is the container port, on all interfaces")
        c.ok(str(cfg.get("listen", "")).startswith("127.0.0.1:"), f"{name}: listen {cfg.get('listen')} is loopback (same pod)")
        sg = duration_s(cfg.get("shutdown_grace", "10s"))
        c.ok(grace > sg, f"{name}: terminationGracePeriodSeconds {grace} > shutdown_grace {sg:g}s")
        c.ok("state_file" not in cfg, f"{name}: no state_file key (this cutover does not accept it yet; commented)")
        ref = yaml.safe_load(open(os.path.join(ROOT, "config", name + ".yaml")))
        mine = [(r["name"], r.get("mode", "batch")) for r in cfg["routes"]]
        theirs = [(r["name"], r.get("mode", "batch")) for r in ref["routes"]]
        c.ok(mine == theirs, f"{name}: routes and modes {mine} match config/{name}.yaml")

    pm = load_all(os.path.join(K8S, "podmonitor.yaml"))
    c.ok(len(pm) == 1, "podmonitor.yaml is one document")
    check_podmonitor(c, pm[0], tmpl_labels, ports)
    c.done()


# The part of prometheus-operator's PodMonitor CRD (monitoring.coreos.com/v1)
# that podmonitor.yaml uses, strict: an unknown key is an error.
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


def check_podmonitor(c, pm, pod_labels, ports):
    try:
        import jsonschema  # kubernetes-validate depends on it
    except ImportError:
        c.ok(False, "jsonschema importable (it comes with kubernetes-validate: run inside its venv)")
        return
    errors = sorted(jsonschema.Draft7Validator(PODMONITOR_SCHEMA).iter_errors(pm), key=str)
    for e in errors:
        print(f"        {'/'.join(map(str, e.path))}: {e.message}")
    c.ok(not errors, "PodMonitor validates against the operator CRD's schema (the fields used, strict)")
    sel = pm.get("spec", {}).get("selector", {}).get("matchLabels", {})
    c.ok(sel and all(pod_labels.get(k) == v for k, v in sel.items()),
         f"PodMonitor selector {sel} matches the Deployment's pod labels")
    for ep in pm.get("spec", {}).get("podMetricsEndpoints", []):
        c.ok(ep.get("port") in ports, f"PodMonitor port {ep.get('port')} is a named port of the sidecar")
        c.ok(ep.get("path", "/metrics") == "/metrics", "PodMonitor scrapes /metrics")
        if "interval" in ep and "scrapeTimeout" in ep:
            c.ok(prom_duration(ep["scrapeTimeout"]) <= prom_duration(ep["interval"]),
                 "PodMonitor scrapeTimeout <= interval")


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
    "extract-config": cmd_extract_config,
    "k8s-lint": cmd_k8s_lint,
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
