"""Runs one rendered workload as a pod would, in a network namespace of its own, and probes it.

Started by the tests as ``unshare --net -- python pod_probe.py JOB.json``: the namespace
has only a loopback device, like a pod's, so the container port the manifests declare is
free whatever else runs on the machine. The probes go to 127.0.0.2, an address of the
namespace other than 127.0.0.1, as the kubelet's go to the pod's IP: a server bound to
127.0.0.1 alone would not answer them. Prints a JSON object: each path's last status
(0: no answer) and the process's exit code after SIGTERM.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  # http only
            code: int = response.status
            return code
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return 0


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with Path(job["log"]).open("wb") as log:
        process = subprocess.Popen(
            [job["chronik"], *job["args"]],
            env=job["env"],
            cwd=job["cwd"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    statuses: dict[str, int] = {}
    try:
        deadline = time.monotonic() + float(job["within"])
        for path in job["paths"]:
            url = f"http://{job['address']}:{job['port']}{path}"
            statuses[path] = status(url)
            while statuses[path] != 200 and time.monotonic() < deadline:
                if process.poll() is not None:
                    break
                time.sleep(0.1)
                statuses[path] = status(url)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=float(job["stop_within"]))
        except subprocess.TimeoutExpired:
            process.kill()
            code = -9
    print(json.dumps({"statuses": statuses, "exit": code}))


if __name__ == "__main__":
    main()
