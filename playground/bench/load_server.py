"""The load test's server: the app in a child process with the settings `python app.py` uses
and its own Gradio cache folder, so that its memory (RSS) and cache size can be read."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_SERVER_SCRIPT = """
import json, sys
import app
from playground.app import priority
opts = json.loads(sys.argv[1])
app.limit_malloc_arenas()  # as app.main() does
demo = app.build_app()
priority.start_workers()  # as app.main() does ($PLAYGROUND_HEAVY_WORK)
queue = app.queue_kwargs()
if opts.get("max_size"):
    queue["max_size"] = opts["max_size"]
demo.queue(**queue).launch(**app.launch_kwargs(queue["max_size"], prevent_thread_lock=True,
                                               server_name="127.0.0.1", quiet=True))
print("URL", demo.local_url, json.dumps(queue), flush=True)
sys.stdin.read()  # serve until the parent closes stdin
demo.close()
"""


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:  # it has just ended
        return 0
    raise RuntimeError("no VmRSS in /proc")


def _children(pid: int) -> list[int]:
    """The processes `pid` started (the heavy-work processes of playground.app.heavy_workers)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


class Server:
    """The app in a child process (its RSS can be read); a fresh Gradio cache folder."""

    def __init__(self, max_size: int | None = None):
        from playground.store.checkpoints import repo_root

        self.cache = tempfile.mkdtemp(prefix="loadtest-gradio-")
        env = {**os.environ, "GRADIO_TEMP_DIR": self.cache, "GRADIO_ANALYTICS_ENABLED": "False"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER_SCRIPT, json.dumps({"max_size": max_size})],
            cwd=repo_root(), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for line in self.proc.stdout:
            if line.startswith("URL "):
                _, url, queue = line.split(" ", 2)
                self.url, self.queue = url.rstrip("/"), json.loads(queue)
                break
        else:
            raise RuntimeError(f"the app did not start (exit code {self.proc.wait(60)})")

    def rss_mb(self) -> float:
        """Resident memory (VmRSS) of the server and its worker processes, MB."""
        return sum(_rss_kb(pid) for pid in (self.proc.pid, *_children(self.proc.pid))) / 1024

    def cache_mb(self) -> float:
        """Size of the server's Gradio cache folder (result files), MB."""
        return sum(p.stat().st_size for p in Path(self.cache).rglob("*") if p.is_file()) / 2**20

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(30)
        except (subprocess.TimeoutExpired, OSError):
            self.proc.kill()
            self.proc.wait()
        import shutil

        shutil.rmtree(self.cache, ignore_errors=True)
