"""The pinned raw data through DVC: push after `make data`, pull where a cluster job runs.

Why: `data.dvc` pins one md5 of data/; a cluster job must train on exactly those bytes, so it
fetches them from the DVC remote (shared storage, S3, ...) instead of regenerating them from
whatever package versions its node has. A job whose data is not on the remote stops and says
which md5 is missing and which `dvc push` fixes it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from components.config import REPO_ROOT, ConfigError

log = logging.getLogger(__name__)

DATA_DVC = "data.dvc"


def _dvc(args: list[str], root: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    dvc = Path(sys.executable).parent / "dvc"
    cmd = [str(dvc) if dvc.exists() else "dvc", *args]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "DVC_NO_ANALYTICS": "1"})


def pinned_md5(root: Path = REPO_ROOT) -> str:
    import yaml

    path = root / DATA_DVC
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (the data pin)")
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or [{}]
    md5 = outs[0].get("md5")
    if not md5:
        raise ConfigError(f"{path}: no outs[0].md5")
    return md5


def default_remote_url(root: Path = REPO_ROOT) -> str:
    """The default remote's URL as this checkout resolves it (`.dvc/config` + `config.local`):
    a local path comes back absolute, so it means the same thing inside a job's copy."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        cfg = repo.config
        name = cfg["core"].get("remote")
        if not name or name not in cfg["remote"]:
            raise ConfigError(f"{root / '.dvc/config'}: no default DVC remote (dvc remote add -d NAME URL)")
        return str(cfg["remote"][name]["url"])


def _local_object(url: str, md5: str) -> Path | None:
    """Where a local-path remote keeps the directory object (DVC 3 layout), None for other schemes."""
    if "://" in url:
        return None
    return Path(url) / "files" / "md5" / md5[:2] / md5[2:]


def push(root: Path = REPO_ROOT) -> str:
    """Put data/ (already checked against data.dvc) into the cache and on the default remote."""
    md5 = pinned_md5(root)
    url = default_remote_url(root)
    if (obj := _local_object(url, md5)) is not None:
        Path(url).mkdir(parents=True, exist_ok=True)
    for args in (["commit", "-f", "-q", DATA_DVC], ["push", "-q", DATA_DVC]):
        proc = _dvc(args, root)
        if proc.returncode != 0:
            raise ConfigError(f"`dvc {' '.join(args)}` failed: {(proc.stderr or proc.stdout).strip()[-600:]}")
    if obj is not None and not obj.is_file():
        raise ConfigError(f"dvc push reported success but {obj} is missing")
    return url


def missing_message(md5: str, url: str) -> str:
    return (f"the DVC remote {url} does not have the data pinned by data.dvc (md5 {md5}): in your checkout run "
            "`make data` (or `dvc push data.dvc`) to upload it, then submit again")


def pull(root: Path, remote_url: str | None = None) -> str:
    """Fetch data/ as pinned by data.dvc into `root` (a job's working dir: no .git, so no_scm).

    `remote_url` (from the submitting checkout) overrides the default remote for this copy only,
    in `.dvc/config.local`, which is never uploaded back.
    """
    md5 = pinned_md5(root)
    url = remote_url or default_remote_url(root)
    if not (root / ".git").exists():
        _dvc(["config", "--local", "core.no_scm", "true"], root)
    if remote_url:
        proc = _dvc(["remote", "add", "--local", "-f", "-d", "job", remote_url], root)
        if proc.returncode != 0:
            raise ConfigError(f"cannot use DVC remote {remote_url}: {proc.stderr.strip()[-400:]}")
    obj = _local_object(url, md5)
    if obj is not None and not obj.is_file():
        raise ConfigError(missing_message(md5, url))
    proc = _dvc(["pull", "-q", DATA_DVC], root)
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip()
        if "missing" in err.lower() or "not found" in err.lower() or "no such" in err.lower():
            raise ConfigError(missing_message(md5, url) + f"\n(dvc said: {err[-300:]})")
        raise ConfigError(f"dvc pull from {url} failed: {err[-600:]}")
    log.info("data/ %s pulled from %s", md5, url)
    return md5
