"""Screenshots of the Prefect UI for the README: the nightly deployment, and a completed
nightly run with its report artifact. Needs Chromium (Debian: `apt-get install chromium`).

A synthetic shop is served by a throw-away local stack (`tests/local_stack.py`); one nightly
run is triggered through the API with a run date, then headless Chromium takes the pictures.

    .venv/bin/python docs/make_screenshots.py [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test harness

from local_stack import local_stack, wait_until

from tasks.ingest.load import ingest_catalog, ingest_landing
from tasks.synth.shop import SynthShopConfig, generate_shop, write_landing

DOCS = Path(__file__).resolve().parent
SHOP = SynthShopConfig(n_customers=300, n_items=250, days=120, seed=7)
RUN_DATE = SHOP.start + dt.timedelta(days=SHOP.days - 2)


def screenshot(chromium: str, url: str, out: Path, profile: Path) -> None:
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--hide-scrollbars",
            "--window-size=1500,1000",
            "--virtual-time-budget=20000",
            f"--screenshot={out}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nightrec-screenshots-"))
    home, landing = root / "home", root / "landing"
    report = write_landing(generate_shop(SHOP), landing)
    ingest_catalog(home / "nightrec.duckdb", report.catalog_path)
    ingest_landing(home / "nightrec.duckdb", "canonical", landing, max_bad_share=0.5, end=RUN_DATE)
    env = {
        "NIGHTREC_HOME": str(home),
        "NIGHTREC_LANDING_DIR": str(landing),
        "NIGHTREC_SOURCE": "canonical",
    }
    with local_stack(root, env) as stack:
        deployment = stack.api("GET", "/deployments/name/nightly/nightly").json()
        flow_run = stack.api(
            "POST",
            f"/deployments/{deployment['id']}/create_flow_run",
            json={"parameters": {"params": {"run_date": RUN_DATE.isoformat()}}},
        ).json()
        wait_until(
            lambda: (
                stack.api("GET", f"/flow_runs/{flow_run['id']}").json()["state"]["type"]
                in ("COMPLETED", "FAILED", "CRASHED")
            ),
            600,
            "the nightly run",
        )
        time.sleep(3)  # let the UI's event feed catch up
        profile = root / "chromium"
        screenshot(
            args.chromium,
            f"{stack.ui_url}/deployments/deployment/{deployment['id']}",
            DOCS / "ui-nightly-deployment.png",
            profile,
        )
        screenshot(
            args.chromium,
            f"{stack.ui_url}/runs/flow-run/{flow_run['id']}",
            DOCS / "ui-nightly-run.png",
            profile,
        )
        (artifact,) = stack.api(
            "POST",
            "/artifacts/filter",
            json={
                "artifacts": {
                    "flow_run_id": {"any_": [flow_run["id"]]},
                    "key": {"any_": ["nightly-run-report"]},
                }
            },
        ).json()
        screenshot(
            args.chromium,
            f"{stack.ui_url}/artifacts/artifact/{artifact['id']}",
            DOCS / "ui-nightly-run-report-artifact.png",
            profile,
        )


if __name__ == "__main__":
    main()
