"""How long each DAG file takes to parse, as the DAG processor pays it: a fresh process that has imported
`airflow.sdk` (paid once by the processor) runs the file; median of several runs, and the modules it imported.

    .venv/bin/python benchmarks/dag_parse.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys, time
import airflow.sdk
before = set(sys.modules)
start = time.perf_counter()
import runpy
runpy.run_path(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - start, "modules": len(set(sys.modules) - before)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for path in sorted((REPO / "dags").glob("*.py")):
        figures = []
        for _ in range(args.runs):
            done = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True,
                                  cwd=REPO, check=True)
            figures.append(json.loads(done.stdout.strip().splitlines()[-1]))
        seconds = statistics.median(f["seconds"] for f in figures)
        print(f"  dags/{path.name:16s} {seconds * 1000:6.0f} ms median of {args.runs} "
              f"(min {min(f['seconds'] for f in figures) * 1000:.0f} ms), {figures[0]['modules']} modules imported")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print(f"reproduce: .venv/bin/python benchmarks/dag_parse.py --runs {args.runs}")


if __name__ == "__main__":
    main()
