"""Wall time of ``mmkeras validate`` with component signatures read from source (the default)
against the same command forced to import every component class (Keras and TensorFlow with it),
alternating, in one run. Prints one JSON object; ``ratio_import_over_source`` is the speed-up.

    python benchmarks/validate_speed.py --recipe recipes/gmc_mhd.yaml --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FORCED_IMPORT = (
    "import sys; from mmkeras import static_signature as s; s.read = lambda target: None; "
    "from mmkeras.cli import main; sys.exit(main(['validate', sys.argv[1]]))"
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="recipes/gmc_mhd.yaml")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    commands = {
        "source": [sys.executable, "-m", "mmkeras.cli", "validate", args.recipe],
        "import": [sys.executable, "-c", FORCED_IMPORT, args.recipe],
    }
    seconds: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(args.repeats):
        for key, cmd in commands.items():
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            seconds[key].append(time.perf_counter() - start)
            if done.returncode != 0:
                sys.exit(f"{key}: exit {done.returncode}: {done.stderr[-500:]}")
    median = {k: statistics.median(v) for k, v in seconds.items()}
    print(
        json.dumps(
            {
                "recipe": args.recipe,
                "median_s": median,
                "ratio_import_over_source": median["import"] / median["source"],
                "seconds": seconds,
                "load_average": os.getloadavg(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
