"""`nightrec tune` with the test-only quadratic objective registered: the subprocess that the
kill -9 test starts and kills. Configured by environment (test-only): TUNE_TEST_SPACE,
TUNE_TEST_DELAY_S, TUNE_TEST_LOG."""

from __future__ import annotations

import os
from pathlib import Path

from tune_objectives import register_quadratic

from flows.cli import main

if __name__ == "__main__":
    register_quadratic(
        Path(os.environ["TUNE_TEST_SPACE"]),
        float(os.environ.get("TUNE_TEST_DELAY_S", "0")),
        Path(os.environ["TUNE_TEST_LOG"]) if "TUNE_TEST_LOG" in os.environ else None,
    )
    main()
