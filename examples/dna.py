"""Writes examples/dna.csv: 600 random DNA sequences (20-60 bases), half of them holding the motif TATAAT
(the -10 box of bacterial promoters) somewhere; the label says which. An order-aware task: the same bases
in another order are no motif, so counting letters does not solve it.

    python examples/dna.py            # then: tunectl train -d csv:examples/dna.csv --target label --sequence seq -m rnn
"""

import csv
import random
from pathlib import Path

MOTIF = "TATAAT"


def main(path: Path = Path(__file__).with_name("dna.csv"), n: int = 600, seed: int = 0) -> None:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        while True:
            s = "".join(rng.choice("ACGT") for _ in range(rng.randint(20, 60)))
            if MOTIF not in s:
                break
        label = "promoter" if i % 2 else "background"
        if label == "promoter":
            at = rng.randint(0, len(s) - len(MOTIF))
            s = s[:at] + MOTIF + s[at + len(MOTIF):]
        rows.append((f"seq{i:04d}", s, label))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "seq", "label"])
        w.writerows(rows)


if __name__ == "__main__":
    main()
