"""Record one nightly run on Online Retail as a user sees it: the terminal text of
`nightrec run --date 2011-08-31 --retrain` (stage progress lines), and the same flow run's logs
in the Prefect UI (a headless Chromium screenshot). Needs Chromium (Debian: `apt-get install
chromium`) and the shop in ../shared/data/online_retail/by-day.

    .venv/bin/python docs/record_nightly_run.py [--chromium /usr/bin/chromium]

Writes docs/nightly-run-terminal.txt and docs/ui-nightly-run-logs.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from local_stack import local_stack, wait_until  # noqa: E402

from docs.make_screenshots import screenshot  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "online_retail" / "by-day"
RUN_DATE = "2011-08-31"


def nightrec(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nightrec-record-"))
    home = root / "home"
    nightrec_env = {"NIGHTREC_HOME": str(home), "NIGHTREC_CONFIG": str(root / "none.yaml")}
    with local_stack(root, nightrec_env) as stack:
        env = {**stack.env, "COLUMNS": "100"}
        ingest = ["ingest", "--source", "online-retail", "--path", str(DATA), "--end", "2011-08-30"]
        loaded = nightrec(env, *ingest)
        if loaded.returncode != 0:
            sys.exit(f"ingest failed:\n{loaded.stderr}")
        command = ["run", "--date", RUN_DATE, "--retrain", "--landing", str(DATA)]
        command += ["--source", "online-retail"]
        started = time.monotonic()
        run = nightrec(env, *command)
        seconds = time.monotonic() - started
        shown = " ".join(command).replace(str(DATA), "../shared/data/online_retail/by-day")
        text = [
            f"$ nightrec {shown}",
            run.stderr.rstrip(),
            run.stdout.rstrip(),
            f"# exit {run.returncode}, {seconds:.0f} s wall on {os.cpu_count()} cores "
            f"(load average {os.getloadavg()[0]:.1f}); Prefect API {stack.api_url} "
            "(`nightrec server`)",
        ]
        (DOCS / "nightly-run-terminal.txt").write_text("\n".join(text) + "\n")
        print("\n".join(text))
        runs = stack.api(
            "POST",
            "/flow_runs/filter",
            json={"flow_runs": {"name": {"any_": [f"nightly-{RUN_DATE}"]}}},
        ).json()
        flow_run = runs[0]
        wait_until(
            lambda: stack.api(
                "POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run["id"]]}}}
            ).json(),
            60,
            "the run's logs",
        )
        time.sleep(3)  # let the UI's feeds catch up
        screenshot(
            args.chromium,
            f"{stack.ui_url}/runs/flow-run/{flow_run['id']}",
            DOCS / "ui-nightly-run-logs.png",
            root / "chromium",
        )


if __name__ == "__main__":
    main()
