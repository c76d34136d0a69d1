"""`python -m duckherd_jobs.transform prepare DIR` (image build) and `configmap DIR NAME`.

prepare: parse the dbt project once, so that transform pods start without parsing it.
configmap: print a ConfigMap holding the project as flat keys (`__` for `/`), ready for
`kubectl apply -f -`, for `spec.transform.dbt.project.configMap`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m duckherd_jobs.transform")
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="pre-parse a dbt project (image build)")
    prepare.add_argument("project", type=Path)
    configmap = commands.add_parser("configmap", help="print a dbt project as a ConfigMap")
    configmap.add_argument("project", type=Path)
    configmap.add_argument("name")
    configmap.add_argument("--namespace")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        from duckherd_jobs.transform.invocation import prepare_project

        written = prepare_project(args.project)
        sys.stderr.write(f"prepared {written}\n")
        return 0
    from duckherd_jobs.transform.project import flatten_project

    metadata = {"name": args.name, **({"namespace": args.namespace} if args.namespace else {})}
    document = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": flatten_project(args.project),
    }
    sys.stdout.write(yaml.safe_dump(document, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
