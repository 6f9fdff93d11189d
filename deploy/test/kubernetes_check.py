#!/usr/bin/env python3
"""Checks what deploy/kubernetes/*.yaml mean together, after kubernetes-validate has checked
each against Kubernetes' schemas (deploy/test.sh): the pieces name each other rightly, the
probes and the stop timing fit the gateway, and no secret is written in them.
"""

import sys
from pathlib import Path

import yaml

failures = []
passed = []


def check(ok, what):
    if ok:
        passed.append(what)
    else:
        print("FAIL " + what)
        failures.append(what)


def main():
    directory = Path(sys.argv[1])
    grace_default_ms = int(sys.argv[2])
    docs = []
    for f in sorted(directory.glob("*.yaml")):
        docs += [(f.name, d) for d in yaml.safe_load_all(f.read_text()) if d]
    by_kind = {}
    for name, d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    check(not by_kind.get("Secret"), "no Secret is written in the manifests (only referenced)")
    namespaces = {d["metadata"].get("namespace") for _, d in docs if d["kind"] != "Namespace"}
    check(namespaces == {n["metadata"]["name"] for n in by_kind.get("Namespace", [])},
          f"every object is in the namespace namespace.yaml makes: {namespaces}")

    (dep,) = by_kind["Deployment"]
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    (c,) = spec["containers"]
    matches = lambda sel: all(labels.get(k) == v for k, v in sel.items())
    check(matches(dep["spec"]["selector"]["matchLabels"]), "the Deployment selects its own pods")
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}

    (cm,) = by_kind["ConfigMap"]
    check({"configMapRef": {"name": cm["metadata"]["name"]}} in c.get("envFrom", []),
          "the gateway takes its settings from the ConfigMap")
    settings = cm["data"]
    check(str(port_names.get("https")) == settings.get("TSUNAGU_SERVER__PORT"),
          "the container port is the gateway's server.port")
    secret_env = [e for e in c.get("env", []) if "valueFrom" in e]
    check(all("secretKeyRef" in e["valueFrom"] for e in secret_env) and
          {e["name"] for e in secret_env} >= {"TSUNAGU_DATABASE__URL", "TSUNAGU_ESCALATION__KEY"},
          "the database URL and the escalation key come from a Secret")
    check(not any(k in settings for k in ("TSUNAGU_DATABASE__URL", "TSUNAGU_ESCALATION__KEY")),
          "no secret in the ConfigMap")

    ready, live = c.get("readinessProbe", {}), c.get("livenessProbe", {})
    check(ready.get("httpGet", {}).get("path") == "/readyz", "readiness on /readyz")
    check(live.get("httpGet", {}).get("path") == "/healthz", "liveness on /healthz")
    for probe in (ready, live, c.get("startupProbe", {})):
        if probe:
            check(probe["httpGet"]["port"] in port_names, f"probe port {probe['httpGet']['port']} is a container port")
            check(probe["httpGet"].get("scheme") == ("HTTPS" if "TSUNAGU_SERVER__TLS_CERT_FILE" in settings else "HTTP"),
                  "probes use the scheme the gateway serves")

    # The stop: preStop's pause, then SIGTERM and the drain; all inside the grace period.
    pre = c.get("lifecycle", {}).get("preStop", {})
    pause = int(pre.get("sleep", {}).get("seconds", 0)) or (
        int(pre["exec"]["command"][1]) if pre.get("exec", {}).get("command", [None])[0] == "sleep" else 0)
    drain_ms = int(settings.get("TSUNAGU_SERVER__SHUTDOWN_GRACE_MS", grace_default_ms))
    delay_ms = int(settings.get("TSUNAGU_SERVER__SHUTDOWN_DELAY_MS", 0))
    period = spec.get("terminationGracePeriodSeconds", 30)
    check(pause > 0, f"preStop pauses ({pause} s) before SIGTERM")
    check(period * 1000 > pause * 1000 + delay_ms + drain_ms,
          f"terminationGracePeriodSeconds {period} s > preStop {pause} s + delay {delay_ms} ms + drain {drain_ms} ms")
    check(dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0,
          "a rolling update starts a new pod before it stops an old one")

    res = c.get("resources", {})
    check(all(res.get("requests", {}).get(k) for k in ("cpu", "memory")) and res.get("limits", {}).get("memory"),
          "CPU and memory requests and a memory limit (the autoscaler needs the CPU request)")
    sc = c.get("securityContext", {})
    check(sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities", {}).get("drop") == ["ALL"]
          and spec.get("securityContext", {}).get("runAsNonRoot") is True
          and spec.get("securityContext", {}).get("runAsUser") == 10001,
          "non-root (the image's uid 10001), no capabilities, no privilege escalation")

    (svc,) = by_kind["Service"]
    check(matches(svc["spec"]["selector"]), "the Service selects the gateways")
    check(all(p["targetPort"] in port_names or p["targetPort"] in port_names.values() for p in svc["spec"]["ports"]),
          "the Service's target port is the gateway's")
    (pdb,) = by_kind["PodDisruptionBudget"]
    check(matches(pdb["spec"]["selector"]["matchLabels"]), "the PodDisruptionBudget covers the gateways")
    (hpa,) = by_kind["HorizontalPodAutoscaler"]
    ref = hpa["spec"]["scaleTargetRef"]
    check(ref["kind"] == "Deployment" and ref["name"] == dep["metadata"]["name"], "the autoscaler scales the Deployment")
    check(any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"]["metrics"]), "the autoscaler follows CPU")
    check(hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["minReplicas"] > int(pdb["spec"].get("maxUnavailable", 1)),
          "at least two gateways, more than the disruption budget takes down")
    (np,) = by_kind["NetworkPolicy"]
    check(matches(np["spec"]["podSelector"]["matchLabels"]), "the NetworkPolicy applies to the gateways")
    ingress_ports = {p["port"] for rule in np["spec"]["ingress"] for p in rule.get("ports", [])}
    check(ingress_ports == {port_names["https"]}, f"only the gateway's port is open: {ingress_ports}")
    egress_ports = {p["port"] for rule in np["spec"]["egress"] for p in rule.get("ports", [])}
    check({53, 6379, 26379, 5432, 443} <= egress_ports, f"DNS, Redis, Sentinel, PostgreSQL, HTTPS out: {sorted(egress_ports)}")

    print(f"kubernetes: {len(passed)} checks passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
