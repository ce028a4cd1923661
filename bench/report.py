"""`python -m bench.report`: the results of the last run (.state/bench/results.json) as a Markdown table.

BENCHMARKS.md's table is pasted from this, so its figures are the run's own.
"""

from __future__ import annotations

import json

from bench.common import RESULTS


def main() -> None:
    data = json.loads(RESULTS.read_text())
    machine = data["machine"]
    print(f"Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB, "
          f"Python {machine['python']}, kernel {machine['kernel']}; load at start {machine['load_avg_at_start']}\n")
    print("| benchmark | median | raw (same run) | ratio / overhead | target | met? |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for row in data["results"].values():
        raw = f"{row['raw']:.1f} {row['unit']}" if row["raw"] is not None else "-"
        ratio = "-"
        if row["ratio"] is not None:
            ratio = f"{row['ratio']:.2f}x"
            if "overhead_ms" in row["extra"]:
                ratio += f" (+{row['extra']['overhead_ms']:.0f} ms)"
        met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
        print(f"| {row['name']} | {row['median']:.1f} {row['unit']} | {raw} | {ratio} | {row['target']} | {met} |")


if __name__ == "__main__":
    main()
