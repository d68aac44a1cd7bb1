"""What the flow audit log costs: the loss-free rate of `imflow` (audit log on, its default
categories im, p2p, voip, collab) and `imflow-noaudit` (`[audit] categories = []`) side by side
in one run of the ingest harness (run.py; its flags pass through). In the harness's traffic
27 % of the flows are of watched categories (23 % p2p, 3 % im, 2 % collab, 1 % voip).

    python bench/ingest/audit_cost.py --versions v9
    python bench/ingest/audit_cost.py --quick

On a machine shared with other work its rates are disturbed (the `others` column);
bench/audit_cpu.py measures the same cost as CPU per flow in one process.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import procs as P
import run


class ImflowNoAudit(P.Imflow):
    name = "imflow-noaudit"

    def command(self, workdir: Path, port: int) -> list[str]:
        cfg = workdir / "noaudit.toml"
        cfg.write_text("[audit]\ncategories = []\n")
        return super().command(workdir, port) + ["--config", str(cfg)]


P.COLLECTORS["imflow-noaudit"] = ImflowNoAudit

if __name__ == "__main__":
    sys.exit(run.main(["--collectors", "imflow,imflow-noaudit", *sys.argv[1:]]))
