"""Stands in for any command a test names in `run_workflow(stubs=...)` (e.g. `make`): records argv
and exits 0, so a workflow's wiring can be checked without running the real thing."""

import sys
from pathlib import Path

from _recorder import record

if __name__ == "__main__":
    record(Path(sys.argv[1]).name, sys.argv[2:])
