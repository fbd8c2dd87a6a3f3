"""Mutation score per module and per function, from mutmut's own result files (mutants/**/*.meta).

`make mutation` runs mutmut 3 over the scope below, then this script: one line per module
(killed / total, %), one per function, and every mutant not killed, with its status. Timeouts
count as killed (the mutant made the tests hang, so they noticed it); "no tests" counts as not
killed (no test in the selection reaches the function).

    python bench/mutation_summary.py [mutants-folder] > bench/mutants.txt
"""

from __future__ import annotations

import fnmatch
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

# The scope: whole modules, data.py's split and tune.py's sampler/pruner construction.
# These are mutmut's mutant-name patterns (`make mutation` passes the same ones to `mutmut run`).
SCOPE = {
    "config": ["tunectl.config.*"],
    "train": ["tunectl.train.*"],
    "space": ["tunectl.space.*"],
    "diagnose": ["tunectl.diagnose.*"],
    "data (split)": ["tunectl.data.xǁSplitsǁ*", "tunectl.data.x_check_split_seed__*", "tunectl.data.x_split_sizes__*",
                     "tunectl.data.x_parse_split__*", "tunectl.data.x_split_indices__*", "tunectl.data.x_make_splits__*",
                     "tunectl.data.x_load_splits__*", "tunectl.data.x_same_split__*"],
    "tune (sampler, pruner)": ["tunectl.tune.x_make_sampler__*", "tunectl.tune.x_make_pruner__*", "tunectl.tune.x_grid__*"],
}
# mutmut's exit codes (mutmut/stats.py)
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}
DETECTED = {"killed", "timeout"}


def results(folder: Path) -> dict[str, str]:
    out = {}
    for meta in sorted(folder.glob("**/*.py.meta")):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            out[name] = STATUS.get(code, "suspicious")
    return out


def function(name: str) -> str:
    return name.split("__mutmut_")[0].replace("ǁ", ".").replace(".x_", ".").replace(".x.", ".")


def main(folder: Path) -> None:
    status = results(folder)
    lines, survivors = [], []
    for module, patterns in SCOPE.items():
        names = [n for n in status if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
        if not names:
            lines.append(f"{module:24s} not run")
            continue
        checked = [n for n in names if status[n] != "not checked"]
        killed = sum(status[n] in DETECTED for n in checked)
        pct = 100 * killed / len(checked) if checked else 0.0
        extra = f" ({len(names) - len(checked)} not checked)" if len(checked) < len(names) else ""
        lines.append(f"{module:24s} {killed:5d} / {len(checked):5d} killed  {pct:5.1f} %{extra}")
        per: dict[str, Counter] = defaultdict(Counter)
        for n in checked:
            per[function(n)][status[n] in DETECTED] += 1
        for fn, c in sorted(per.items()):
            lines.append(f"    {fn:50s} {c[True]:4d} / {c[True] + c[False]:4d}")
        survivors += [f"    {n}: {status[n]}" for n in sorted(checked) if status[n] not in DETECTED]
    print("# mutmut 3.8.1 over issue 19's scope (bench/mutation_summary.py; docs/testing.md says why each survivor")
    print("# is left). Per module and function: killed (or timed out) / mutants checked.")
    print("\n".join(lines))
    print(f"\n# Mutants not killed ({len(survivors)}):")
    print("\n".join(survivors))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "mutants"))
