#!/usr/bin/env python3
"""Writes oomscope.json: the container runtimes' default seccomp allowlist
(containers/common's seccomp.json, which follows moby's default profile) as
it applies to a container holding exactly oomscope's capabilities, plus
`bpf` and `perf_event_open`, which the default allows only with
CAP_SYS_ADMIN.

The output uses only the OCI runtime-spec fields (defaultAction,
defaultErrnoRet, architectures, syscalls[].names/action/errnoRet/args):
containerd reads a Localhost profile straight into the runtime spec and
would silently drop moby's capability and architecture conditions, so they
are resolved here instead (amd64 only: the image is amd64).

Usage: generate.py [/usr/share/containers/seccomp.json] > oomscope.json
"""
import json
import sys

CAPS = {"CAP_BPF", "CAP_PERFMON", "CAP_SYSLOG", "CAP_SYS_PTRACE"}
ARCH = "amd64"
EXTRA = ["bpf", "perf_event_open"]

source = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/containers/seccomp.json"
with open(source) as f:
    default = json.load(f)

def applies(rule):
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("arches") and ARCH not in inc["arches"]:
        return False
    if exc.get("arches") and ARCH in exc["arches"]:
        return False
    if inc.get("caps") and not set(inc["caps"]) <= CAPS:
        return False
    if exc.get("caps") and set(exc["caps"]) & CAPS:
        return False
    if inc.get("minKernel") or exc.get("minKernel"):
        raise SystemExit(f"minKernel condition not handled: {rule}")
    return True

allowed, rules = set(EXTRA), []
for rule in default["syscalls"]:
    if not applies(rule):
        continue
    names = [n for n in rule["names"] if n not in EXTRA]
    if not names:
        continue
    if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args"):
        allowed.update(names)
        continue
    out = {"names": sorted(names), "action": rule["action"]}
    if rule.get("errnoRet") is not None:
        out["errnoRet"] = rule["errnoRet"]
    if rule.get("args"):
        out["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op")} for a in rule["args"]]
    rules.append(out)

# An explicit refusal wins over the allowlist (moby's order of precedence).
for rule in rules:
    if rule["action"] != "SCMP_ACT_ALLOW" and not rule.get("args"):
        allowed.difference_update(rule["names"])

profile = {
    "defaultAction": default["defaultAction"],
    "defaultErrnoRet": default.get("defaultErrnoRet", 1),
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [{"names": sorted(allowed), "action": "SCMP_ACT_ALLOW"}] + rules,
}
json.dump(profile, sys.stdout, indent=2)
sys.stdout.write("\n")
