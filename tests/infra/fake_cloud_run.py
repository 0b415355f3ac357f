"""A fake `gcloud` for scripts/rollout.sh: a small program keeping Cloud Run services,
revisions, traffic, tags and each template's annotations in a JSON file, so the rollout
logic runs for real and only Google's API is replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.paths import REPO as ROOT

ROLLOUT = ROOT / "scripts" / "rollout.sh"

FAKE_GCLOUD = r"""
import json, sys
path = sys.argv[1]
args = sys.argv[2:]
state = json.load(open(path))
state.setdefault("calls", []).append(args)
def save():
    json.dump(state, open(path, "w"))
def opt(name):
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None
if args[:3] == ["run", "services", "describe"]:
    svc = state["services"].get(args[3])
    save()
    if svc is None:
        print(f"ERROR: service {args[3]} not found", file=sys.stderr)
        sys.exit(1)
    fmt = opt("format")
    if fmt == "value(metadata.name)":
        print(args[3])
    elif fmt == "value(status.latestCreatedRevisionName)":
        print(svc["latest"])
    else:
        traffic = [dict(t) for t in svc["traffic"]]
        for tag, rev in svc["tags"].items():
            traffic.append({"revisionName": rev, "tag": tag, "url": f"https://{tag}---{args[3]}.run.app"})
        print(json.dumps({"metadata": {"name": args[3]},
                          "spec": {"template": {"metadata": {"annotations": svc["template"]}}},
                          "status": {"latestCreatedRevisionName": svc["latest"], "traffic": traffic}}))
elif args[:3] == ["run", "services", "update"]:
    # A configuration change: a new revision from the changed template. Traffic names
    # revisions (the pin step pinned it), so the new revision gets none.
    svc = state["services"][args[3]]
    boost = {"--cpu-boost": "true", "--no-cpu-boost": "false"}
    flags = [a for a in args[4:] if a in boost]
    assert len(flags) == 1, args
    assert set(args[4:]) - set(flags) <= {f"--region={opt('region')}", "--no-traffic", "--quiet"}, args
    template = {**svc["template"], "run.googleapis.com/startup-cpu-boost": boost[flags[0]]}
    revision = f"{args[3]}-{len(svc['revisions']) + 1:05d}"
    svc["revisions"].append(revision)
    svc["latest"] = revision
    svc["template"] = template
    svc["annotations"][revision] = template
    save()
elif args[:3] == ["run", "services", "update-traffic"]:
    svc = state["services"][args[3]]
    split = opt("to-revisions")
    if split:
        pairs = [p.split("=") for p in split.split(",")]
        assert sum(int(n) for _, n in pairs) == 100, split
        for rev, _ in pairs:
            assert rev in svc["revisions"], rev
        svc["traffic"] = [{"revisionName": r, "percent": int(n)} for r, n in pairs if int(n)]
    tags = opt("set-tags")
    if tags:
        for pair in tags.split(","):
            tag, rev = pair.split("=")
            svc["tags"][tag] = rev
    save()
elif args[:2] == ["logging", "read"]:
    save()
    for _ in range(state.get("errors", 0)):
        print(500)
else:
    save()
    sys.exit(f"unexpected gcloud call {args}")
"""


class FakeCloud:
    def __init__(self, tmp_path: Path) -> None:
        self.state_path = tmp_path / "cloud.json"
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        program = tmp_path / "fake_gcloud.py"
        program.write_text(FAKE_GCLOUD, encoding="utf-8")
        gcloud = self.bin / "gcloud"
        gcloud.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{program}" "{self.state_path}" "$@"\n',
            encoding="utf-8",
        )
        gcloud.chmod(0o755)
        self.rollout_dir = tmp_path / "rollout"
        self.boost_file = tmp_path / "startup_cpu_boost_services.json"
        self.boost_in_terraform()
        self.save({"services": {}})

    def load(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_path.read_text(encoding="utf-8"))
        return data

    def save(self, state: dict[str, Any]) -> None:
        self.state_path.write_text(json.dumps(state), encoding="utf-8")

    def deploy(
        self, service: str, revision: str, *, takes_traffic: bool, cpu_boost: bool = False
    ) -> None:
        """What `terraform apply` does to a service: a new revision, maybe all traffic.
        `cpu_boost`: whether the template the Cloud Functions API left has startup CPU
        boost (the API does not carry the setting; whether it keeps one set through Cloud
        Run is not documented, so the tests cover both)."""
        state = self.load()
        svc = state["services"].setdefault(
            service,
            {"revisions": [], "latest": "", "traffic": [], "tags": {}, "annotations": {}},
        )
        template = {"run.googleapis.com/startup-cpu-boost": "true"} if cpu_boost else {}
        svc["revisions"].append(revision)
        svc["latest"] = revision
        svc["template"] = template
        svc["annotations"][revision] = template
        if takes_traffic or not svc["traffic"]:
            svc["traffic"] = [{"revisionName": revision, "percent": 100}]
        self.save(state)

    def boost_in_terraform(self, *services: str) -> None:
        """The file cloudbuild.yaml writes: terraform output -json startup_cpu_boost_services."""
        self.boost_file.write_text(json.dumps(list(services)), encoding="utf-8")

    def annotations(self, service: str, revision: str) -> dict[str, str]:
        annotations: dict[str, str] = self.load()["services"][service]["annotations"][revision]
        return annotations

    def revisions(self, service: str) -> list[str]:
        revisions: list[str] = self.load()["services"][service]["revisions"]
        return revisions

    def updates(self) -> list[list[str]]:
        """The calls that change a service's configuration (each makes a revision)."""
        return [call for call in self.load()["calls"] if call[:3] == ["run", "services", "update"]]

    def traffic(self, service: str) -> dict[str, int]:
        svc = self.load()["services"][service]
        return {t["revisionName"]: t["percent"] for t in svc["traffic"]}

    def run(self, *args: str, errors: int = 0, **more_env: str) -> subprocess.CompletedProcess[str]:
        state = self.load()
        state["errors"] = errors
        self.save(state)
        env = {
            **{key: value for key, value in os.environ.items() if key != "CPU_BOOST_SERVICES"},
            "CPU_BOOST_FILE": str(self.boost_file),
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "REGION": "us-central1",
            "SERVICES": "ion-chat",
            "ROLLOUT_STATE": str(self.rollout_dir),
            **more_env,
        }
        return subprocess.run(
            ["bash", str(ROLLOUT), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout
