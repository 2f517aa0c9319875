#!/usr/bin/env python3
"""Offline checks of stemforge's deployment files, run by deploy/check.sh.

    validate.py k8s RENDERED.yaml --k8s-versions 1.28.0,1.33.0 --schemas DIR [--base]
    validate.py compose COMPOSE.yaml --secrets-dir DIR
    validate.py systemd UNIT... --toml FILE...

Each subcommand prints what it checked and exits 1 on any problem.
Needs PyYAML, jsonschema and kubernetes-validate (deploy/check.sh installs them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tomllib
from pathlib import Path, PurePosixPath

import yaml

# Configuration keys the stemforge binary accepts (TOML key = lower case of
# STEMFORGE_<KEY>). Keep in step with coordinator/src/settings.rs.
KNOWN_KEYS = {
    "listen", "data_dir", "coordinator", "metrics_listen", "log_format", "media_roots",
    "tls_cert", "tls_key", "tls_client_ca", "tls_ca", "tls_client_cert", "tls_client_key",
    "tls_domain", "client_token_file", "worker_token_file", "client_token", "worker_token",
    "allow_insecure", "drain_timeout_s", "workers", "lease_ms", "heartbeat_ms", "max_attempts",
    "backoff_base_ms", "backoff_max_ms", "poll_wait_ms", "max_worker_failures",
    "metrics_public", "cache", "cache_dir", "cache_max_gb", "schedules",
    "http_listen", "dashboard", "dashboard_public_read",
    "watch", "webhooks",
}
# STEMFORGE_ variables that are not configuration keys.
EXTRA_ENV = {"STEMFORGE_LOG"}
PATH_KEYS = ("tls_cert", "tls_key", "tls_client_ca", "tls_ca", "tls_client_cert",
             "tls_client_key", "client_token_file", "worker_token_file")
DRAIN_TIMEOUT_DEFAULT = 25

problems: list[str] = []


def fail(msg: str) -> None:
    problems.append(msg)
    print(f"  FAIL {msg}")


def ok(msg: str) -> None:
    print(f"  ok   {msg}")


def finish(what: str) -> int:
    if problems:
        print(f"{what}: {len(problems)} problem(s)")
        return 1
    print(f"{what}: all checks passed")
    return 0


def check_env_name(name: str, where: str) -> None:
    if not name.startswith("STEMFORGE_") or name in EXTRA_ENV:
        return
    key = name[len("STEMFORGE_"):].lower()
    if key not in KNOWN_KEYS:
        fail(f"{where}: {name} is not a stemforge configuration variable")


def check_toml(text: str, where: str) -> dict:
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        fail(f"{where}: not valid TOML: {e}")
        return {}
    unknown = sorted(set(cfg) - KNOWN_KEYS)
    if unknown:
        fail(f"{where}: unknown configuration keys {unknown}")
    if "log_format" in cfg and cfg["log_format"] not in ("text", "json"):
        fail(f"{where}: log_format must be text or json")
    if "media_roots" in cfg and not (
        isinstance(cfg["media_roots"], list) and all(isinstance(r, str) and r.startswith("/") for r in cfg["media_roots"])
    ):
        fail(f"{where}: media_roots must be a list of absolute paths")
    return cfg


# --------------------------------------------------------------------------- k8s

def k8s(args: argparse.Namespace) -> int:
    import jsonschema
    import kubernetes_validate as kv

    docs = [d for d in yaml.safe_load_all(Path(args.rendered).read_text()) if d]
    if not docs:
        fail("rendered output holds no documents")
        return finish("kubernetes")
    crd_schemas = {}
    for f in sorted(Path(args.schemas).glob("*.json")):
        s = json.loads(f.read_text())
        jsonschema.Draft202012Validator.check_schema(s)
        api = s["properties"]["apiVersion"]["const"]
        kind = s["properties"]["kind"]["const"]
        crd_schemas[(api, kind)] = (f.name, jsonschema.Draft202012Validator(s))

    versions = [v for v in args.k8s_versions.split(",") if v]
    for d in docs:
        ident = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        key = (d.get("apiVersion"), d.get("kind"))
        if key in crd_schemas:
            name, validator = crd_schemas[key]
            errs = sorted(validator.iter_errors(d), key=lambda e: list(e.absolute_path))
            for e in errs:
                fail(f"{ident}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message} (schema {name})")
            if not errs:
                ok(f"{ident} against vendored schema {name}")
            continue
        for v in versions:
            try:
                kv.validate(d, v, strict=True)
            except kv.ValidationError as e:
                path = "/".join(map(str, getattr(e, "absolute_path", []))) or "<root>"
                fail(f"{ident}: {path}: {getattr(e, 'message', e)} (Kubernetes {v}, strict)")
            except kv.SchemaNotFoundError:
                fail(f"{ident}: no Kubernetes {v} schema for {key[0]} {key[1]} and no vendored schema")
        else:
            if not any(p.startswith(ident + ":") for p in problems):
                ok(f"{ident} against Kubernetes {', '.join(versions)} (strict)")

    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

    if args.base:
        if "Secret" in by_kind:
            fail(f"base renders Secrets {sorted(by_kind['Secret'])}: secret values do not belong in the base")
        else:
            ok("base holds no Secret objects")
        if any(d.get("metadata", {}).get("namespace") for d in docs):
            fail("base sets metadata.namespace: it must stay namespace-agnostic")
        else:
            ok("base is namespace-agnostic")

    configmaps = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    pvcs = by_kind.get("PersistentVolumeClaim", {})
    external_secrets = set(args.external_secrets.split(",")) if args.base else set()

    workloads = list(by_kind.get("Deployment", {}).values()) + list(by_kind.get("StatefulSet", {}).values())
    for w in workloads:
        check_workload(w, configmaps, secrets, pvcs, external_secrets)

    for s in by_kind.get("StatefulSet", {}).values():
        if s["metadata"]["name"] == "stemforge-coordinator" and s["spec"].get("replicas", 1) != 1:
            fail("StatefulSet/stemforge-coordinator: replicas must be 1 (single SQLite writer)")

    for svc in by_kind.get("Service", {}).values():
        sel = svc["spec"].get("selector", {})
        targets = [w for w in workloads if sel and all(
            w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
        ident = f"Service/{svc['metadata']['name']}"
        if not targets:
            fail(f"{ident}: selector {sel} matches no workload")
            continue
        names = {p.get("name") for w in targets for c in w["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in names:
                fail(f"{ident}: targetPort {p['targetPort']} is not a named container port")
        ok(f"{ident} selects {[w['metadata']['name'] for w in targets]} with matching port names")

    for so in by_kind.get("ScaledObject", {}).values():
        ident = f"ScaledObject/{so['metadata']['name']}"
        spec = so["spec"]
        ref = spec["scaleTargetRef"]
        target = by_kind.get(ref.get("kind", "Deployment"), {}).get(ref["name"])
        if target is None:
            fail(f"{ident}: scale target {ref.get('kind', 'Deployment')}/{ref['name']} is not in the render")
        elif "replicas" in target["spec"]:
            fail(f"{ident}: {ref['name']} sets spec.replicas; KEDA owns it (kubectl apply would reset the count)")
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            fail(f"{ident}: minReplicaCount > maxReplicaCount")
        queries = [t["metadata"].get("query", "") for t in spec["triggers"] if t["type"] == "prometheus"]
        if not any("stemforge_queue_depth" in q for q in queries):
            fail(f"{ident}: no Prometheus trigger on stemforge_queue_depth")
        if not any(p.startswith(ident) for p in problems):
            ok(f"{ident}: target exists without a fixed replica count, bounds and trigger sane")

    return finish("kubernetes " + ("base" if args.base else "overlay"))


def volume_files(vol: dict, secrets: dict, configmaps: dict) -> set[str] | None:
    """File names a volume provides, or None if unknown (e.g. a PVC)."""
    def items(src: dict, objs: dict, kind: str) -> set[str]:
        if src.get("items"):
            return {i["path"] for i in src["items"]}
        obj = objs.get(src.get("name") or src.get("secretName"))
        if obj is None:
            return set()
        return set(obj.get("data", {})) | set(obj.get("stringData", {}))
    if "secret" in vol:
        return items(vol["secret"], secrets, "Secret")
    if "configMap" in vol:
        return items(vol["configMap"], configmaps, "ConfigMap")
    if "projected" in vol:
        out: set[str] = set()
        for s in vol["projected"]["sources"]:
            if "secret" in s:
                out |= items(s["secret"], secrets, "Secret")
            if "configMap" in s:
                out |= items(s["configMap"], configmaps, "ConfigMap")
        return out
    return None


def check_workload(w: dict, configmaps: dict, secrets: dict, pvcs: dict, external_secrets: set[str]) -> None:
    ident = f"{w['kind']}/{w['metadata']['name']}"
    n_before = len(problems)
    pod = w["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        fail(f"{ident}: pod securityContext.runAsNonRoot must be true")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        fail(f"{ident}: pod seccompProfile must be RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        fail(f"{ident}: automountServiceAccountToken must be false")
    if pod.get("enableServiceLinks") is not False:
        fail(f"{ident}: enableServiceLinks must be false (service links inject STEMFORGE_* variables)")

    vct = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for name, v in vols.items():
        refs = []
        if "configMap" in v:
            refs.append(("ConfigMap", v["configMap"]["name"], configmaps))
        if "secret" in v:
            refs.append(("Secret", v["secret"]["secretName"], secrets))
        if "persistentVolumeClaim" in v:
            refs.append(("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"], pvcs))
        for s in v.get("projected", {}).get("sources", []):
            if "secret" in s:
                refs.append(("Secret", s["secret"]["name"], secrets))
            if "configMap" in s:
                refs.append(("ConfigMap", s["configMap"]["name"], configmaps))
        for kind, ref, objs in refs:
            if ref in objs:
                obj = objs[ref]
                for src in ([v.get("secret") or v.get("configMap")] if ("secret" in v or "configMap" in v)
                            else [s.get("secret") or s.get("configMap") for s in v.get("projected", {}).get("sources", [])]):
                    if src and (src.get("name") or src.get("secretName")) == ref:
                        have = set(obj.get("data", {})) | set(obj.get("stringData", {}))
                        for i in src.get("items", []):
                            if i["key"] not in have:
                                fail(f"{ident}: volume {name}: {kind}/{ref} has no key {i['key']}")
            elif kind == "Secret" and ref in external_secrets:
                pass
            else:
                fail(f"{ident}: volume {name} refers to {kind}/{ref}, which is not in the render")

    # terminationGracePeriodSeconds must cover the worker's drain timeout.
    grace = pod.get("terminationGracePeriodSeconds", 30)

    for c in pod["containers"]:
        cid = f"{ident} container {c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(f"{cid}: allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(f"{cid}: readOnlyRootFilesystem must be true")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            fail(f"{cid}: capabilities.drop must include ALL")
        res = c.get("resources", {})
        if not res.get("requests", {}).get("cpu") or not res.get("requests", {}).get("memory"):
            fail(f"{cid}: cpu and memory requests are required")
        if not res.get("limits", {}).get("memory"):
            fail(f"{cid}: a memory limit is required")
        for e in c.get("env", []):
            check_env_name(e["name"], cid)

        mounts = c.get("volumeMounts", [])
        for m in mounts:
            if m["name"] not in vols and m["name"] not in vct:
                fail(f"{cid}: volumeMount {m['name']} has no volume")

        # Find the config file given by --config and check its paths against the mounts.
        argv = list(c.get("command", [])) + list(c.get("args", []))
        if "--config" not in argv:
            fail(f"{cid}: no --config argument")
            continue
        cfg_path = PurePosixPath(argv[argv.index("--config") + 1])
        role = next((a for a in argv if a in ("coordinator", "worker")), None)

        def mount_for(p: PurePosixPath):
            best = None
            for m in mounts:
                mp = PurePosixPath(m["mountPath"])
                if p == mp or mp in p.parents:
                    if best is None or len(str(mp)) > len(str(best[0])):
                        best = (mp, m)
            return best

        found = mount_for(cfg_path)
        vol = vols.get(found[1]["name"]) if found else None
        if not vol or "configMap" not in vol:
            fail(f"{cid}: --config {cfg_path} is not on a ConfigMap mount")
            continue
        cm = configmaps.get(vol["configMap"]["name"])
        fname = str(cfg_path.relative_to(found[0]))
        if cm is None or fname not in cm.get("data", {}):
            fail(f"{cid}: ConfigMap for {cfg_path} lacks {fname}")
            continue
        cfg = check_toml(cm["data"][fname], f"{cid} {cfg_path}")

        for key in PATH_KEYS:
            if key not in cfg:
                continue
            p = PurePosixPath(cfg[key])
            f = mount_for(p)
            if not f:
                fail(f"{cid}: {key} = {p} is not under any volume mount")
                continue
            provided = volume_files(vols.get(f[1]["name"], {}), secrets, configmaps)
            rel = str(p.relative_to(f[0]))
            if provided is not None and rel not in provided:
                fail(f"{cid}: {key} = {p}: volume {f[1]['name']} provides {sorted(provided)}, not {rel}")
        for root in cfg.get("media_roots", []):
            f = mount_for(PurePosixPath(root))
            if not f:
                fail(f"{cid}: media root {root} is not mounted")
            elif role == "worker" and f[1].get("readOnly"):
                fail(f"{cid}: media root {root} is mounted read-only; workers write deliverables")
        if role == "coordinator":
            f = mount_for(PurePosixPath(cfg.get("data_dir", "stemforge-data")))
            if not f or f[1].get("readOnly") or (f[1]["name"] not in vct and "persistentVolumeClaim" not in vols.get(f[1]["name"], {})):
                fail(f"{cid}: data_dir must be on a writable persistent volume")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                cmd = c.get(probe, {}).get("exec", {}).get("command", [])
                if "health" not in cmd:
                    fail(f"{cid}: {probe} must exec `stemforge health`")
                elif "--config" in cmd and cmd[cmd.index("--config") + 1] != str(cfg_path):
                    fail(f"{cid}: {probe} reads another config file than the server")
            if cfg.get("tls_cert") and not str(cfg.get("listen", "")).startswith("127."):
                for k in ("client_token_file", "worker_token_file"):
                    if k not in cfg:
                        fail(f"{cid}: TLS on a public address without {k}")
        if role == "worker":
            drain = int(cfg.get("drain_timeout_s", DRAIN_TIMEOUT_DEFAULT))
            if grace < drain + 15:
                fail(f"{cid}: terminationGracePeriodSeconds {grace} leaves too little time over drain_timeout_s {drain}")
            if not str(cfg.get("coordinator", "")).startswith("https://"):
                fail(f"{cid}: coordinator URL must be https://")
    if len(problems) == n_before:
        ok(f"{ident}: hardening, resources, volumes, config keys and config paths consistent")


# ------------------------------------------------------------------------ compose

def parse_duration(s: str) -> float:
    total = 0.0
    for num, unit in re.findall(r"([0-9.]+)(us|ms|s|m|h)", str(s)):
        total += float(num) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def compose(args: argparse.Namespace) -> int:
    path = Path(args.compose)
    doc = yaml.safe_load(path.read_text())
    generated = {p.name for p in Path(args.secrets_dir).iterdir()}
    top_secrets = doc.get("secrets", {})
    for name, s in top_secrets.items():
        f = s.get("file", "")
        if not f.startswith("./secrets/"):
            fail(f"secret {name}: file {f} is not under ./secrets/")
        elif Path(f).name not in generated:
            fail(f"secret {name}: {f} is not produced by make-dev-secrets.sh (it makes {sorted(generated)})")
    ok(f"{len(top_secrets)} file secrets all produced by make-dev-secrets.sh")

    for sname, svc in doc["services"].items():
        sid = f"service {sname}"
        n_before = len(problems)
        env = svc.get("environment", {})
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        mine = set(svc.get("secrets", []))
        for k, v in env.items():
            check_env_name(k, sid)
            if isinstance(v, str) and v.startswith("/run/secrets/") and v[len("/run/secrets/"):] not in mine:
                fail(f"{sid}: {k} points at {v}, but the service does not mount that secret")
        for s in mine:
            if s not in top_secrets:
                fail(f"{sid}: secret {s} is not declared")
        if svc.get("user") != "10001:10001" or not svc.get("read_only") or "ALL" not in svc.get("cap_drop", []):
            fail(f"{sid}: must run as 10001:10001, read_only, cap_drop ALL")
        cmd = svc.get("command", [])
        if "worker" in cmd:
            if parse_duration(svc.get("stop_grace_period", "10s")) < int(env.get("STEMFORGE_DRAIN_TIMEOUT_S", DRAIN_TIMEOUT_DEFAULT)) + 15:
                fail(f"{sid}: stop_grace_period must exceed drain_timeout_s with margin")
            if "replicas" not in svc.get("deploy", {}):
                fail(f"{sid}: deploy.replicas missing")
            if any(str(v).endswith(":ro") and "/srv/media" in str(v) for v in svc.get("volumes", [])):
                fail(f"{sid}: workers need the media volume read-write")
        if "coordinator" in cmd:
            test = svc.get("healthcheck", {}).get("test", [])
            if "health" not in test:
                fail(f"{sid}: healthcheck must run `stemforge health`")
            if parse_duration(svc.get("stop_grace_period", "10s")) < 30:
                fail(f"{sid}: stop_grace_period too short for a clean store shutdown")
            if not any(str(v).startswith("coordinator-data:") for v in svc.get("volumes", [])):
                fail(f"{sid}: the job store needs the coordinator-data volume")
        if len(problems) == n_before:
            ok(f"{sid}: environment keys, secrets, hardening and stop behaviour consistent")
    return finish("compose")


# ------------------------------------------------------------------------ systemd

def systemd(args: argparse.Namespace) -> int:
    for unit in args.units:
        p = Path(unit)
        n_before = len(problems)
        text = p.read_text()
        creds = set(re.findall(r"^LoadCredential=([^:\n]+):", text, re.M))
        for name, value in re.findall(r"^Environment=(STEMFORGE_[A-Z0-9_]+)=(.*)$", text, re.M):
            check_env_name(name, p.name)
            if value.startswith("%d/") and value[3:] not in creds:
                fail(f"{p.name}: {name}={value} has no matching LoadCredential={value[3:]}:...")
        if p.suffix == ".service":
            m = re.search(r"^TimeoutStopSec=(\d+)", text, re.M)
            if not m or int(m.group(1)) < DRAIN_TIMEOUT_DEFAULT + 15:
                fail(f"{p.name}: TimeoutStopSec must exceed drain_timeout_s ({DRAIN_TIMEOUT_DEFAULT}) with margin")
            cfg = re.search(r"--config (\S+)", text)
            if not cfg:
                fail(f"{p.name}: ExecStart has no --config")
        if len(problems) == n_before:
            ok(f"{p.name}: STEMFORGE_* variables known, credentials wired, stop timeout")
    for t in args.toml:
        n_before = len(problems)
        cfg = check_toml(Path(t).read_text(), t)
        if len(problems) == n_before:
            ok(f"{Path(t).name}: valid TOML, keys {sorted(cfg)} all known")
    return finish("systemd")


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("k8s")
    a.add_argument("rendered")
    a.add_argument("--k8s-versions", default="1.28.0")
    a.add_argument("--schemas", required=True)
    a.add_argument("--base", action="store_true")
    a.add_argument("--external-secrets", default="stemforge-coordinator-tls,stemforge-worker-tls,stemforge-ca,stemforge-tokens")
    b = sub.add_parser("compose")
    b.add_argument("compose")
    b.add_argument("--secrets-dir", required=True)
    c = sub.add_parser("systemd")
    c.add_argument("units", nargs="+")
    c.add_argument("--toml", nargs="*", default=[])
    args = ap.parse_args()
    return {"k8s": k8s, "compose": compose, "systemd": systemd}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
