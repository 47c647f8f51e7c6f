"""`python -m quartet.stage STAGE FAMILY TASK [--profile P]`: what each DVC stage runs.

Why not `quartet STAGE ...` (the CLI): a DVC stage depends on the code it runs, and this entry
imports only components/stages.py, the components it calls and the one family, so editing the
CLI (or another family) reruns nothing. Errors a user can fix exit 2 with one line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from components import cluster

    cluster.apply_env()  # first: the kernel pins and Ray's loopback settings, before torch or Ray load
    from components import stages
    from components.config import REPO_ROOT, ConfigError, load

    parser = argparse.ArgumentParser(prog="python -m quartet.stage", description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=list(stages.STAGES))
    parser.add_argument("family")
    parser.add_argument("task")
    parser.add_argument("--profile", default=os.environ.get("QUARTET_PROFILE"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("QUARTET_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    try:
        from families import get

        out = stages.STAGES[args.stage](get(args.family), args.task, load(REPO_ROOT, args.profile), REPO_ROOT)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TimeoutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    if args.stage == "register":
        print(f"{out['name']} v{out['version']}: {'promoted to @champion' if out['promoted'] else 'not promoted'} "
              f"({out['reason']})")
    print(f"{args.stage} {args.family}/{args.task} done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
