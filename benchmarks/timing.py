"""Two ways of doing one thing, timed interleaved: the Markdown table a benchmark records."""

from __future__ import annotations

import statistics


def before_now_table(seconds: dict[str, list[float]], digits: int = 3) -> list[str]:
    """Lines of a table of each way's median and runs, then the ratio of the first way's
    median (before) to the second's (now)."""
    medians = {way: statistics.median(values) for way, values in seconds.items()}
    before, now = medians.values()
    return [
        "| way | median s | runs s |",
        "| --- | ---: | --- |",
        *(
            f"| {way} | {medians[way]:.{digits}f} | "
            f"{', '.join(f'{v:.{digits}f}' for v in values)} |"
            for way, values in seconds.items()
        ),
        "",
        f"Ratio (before / now): {before / now:.2f}x.",
        "",
    ]
