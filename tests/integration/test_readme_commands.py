"""The README's commands, pasted into a fresh shell: the serving examples answer 200 with JSON,
and `make status` / `quartet status` as documented."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration
README = REPO / "README.md"


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[str]:
    """A block's commands: comments dropped, `\\` continuations and trailing pipes joined."""
    out, current = [], ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\") + ("\n" if not line.endswith("\\") else " ")
        if not line.endswith(("\\", "|", ",")) and current.count("(") <= current.count(")"):
            out.append(re.sub(r"\s+#\s[^'\"]*$", "", current.strip()))  # a trailing comment
            current = ""
    return out


def serving_examples() -> list[str]:
    (block,) = [b for b in bash_blocks(README.read_text()) if "curl -s 127.0.0.1:8000/health" in b]
    return commands(block)


def fresh_shell(command: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`bash -c` with only what a new terminal has: no venv activated, no test variables."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_readme_block_parses_into_its_commands() -> None:
    cmds = serving_examples()
    assert cmds[0] == "curl -s 127.0.0.1:8000/health" and len(cmds) >= 12
    assert all(c.startswith(("curl", ".venv/bin/python", "python3")) for c in cmds), cmds


def test_every_serving_example_in_the_readme_answers_json(server) -> None:
    url, _ = server
    for command in serving_examples():
        cmd = command.replace("127.0.0.1:8000", url.removeprefix("http://")) + " -w '\\n%{http_code}'"
        proc = fresh_shell(cmd, REPO)
        assert proc.returncode == 0, (command, proc.stderr[-500:])
        body, status = proc.stdout.rsplit("\n", 1)
        assert status == "200", (command, status, body[:500])
        assert isinstance(json.loads(body), dict), command


def test_quartet_status_as_documented(server, trained_repo: Path) -> None:
    url, _ = server
    text = README.read_text()
    assert "make status" in text and ".venv/bin/quartet status" in text
    # The copy's own `.venv/bin/quartet`, as `make` gives a checkout: this venv's console script
    # would import this repo's code (an editable install), so it runs the copy's instead.
    script = trained_repo / ".venv" / "bin" / "quartet"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m quartet.cli "$@"\n')
    script.chmod(0o755)
    proc = fresh_shell(f".venv/bin/quartet status --port {url.rsplit(':', 1)[1]}", trained_repo, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tracking store   sqlite:///" in proc.stdout and "served app       ok" in proc.stdout, proc.stdout
    assert "pipeline         unknown" not in proc.stdout and "none registered" not in proc.stdout, proc.stdout
