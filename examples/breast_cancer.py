"""The data of the example pipelines (examples/pipelines/): scikit-learn's
breast-cancer set split between two organisations.

Run it with a node venv's Python (scikit-learn and pandas are in it):

    /opt/secretflow/venv/bin/python breast_cancer.py OUT_DIR

It writes
- OUT_DIR/alice.csv: id, features a00..a14 and the label y (569 rows less
  every 50th id: 12 rows that only bob has), rows in one shuffled order;
- OUT_DIR/bob.csv: id and features b00..b14 (less the ids that leave 7 when
  divided by 61: 9 rows that only alice has), in another order;
- OUT_DIR/truth.json: the joined table's row count, each column's count,
  mean, min and max as pandas computes them, and each side's columns.

Upload alice.csv to alice's node as bc/alice.csv and bob.csv to bob's as
bc/bob.csv (playbooks/upload.yml), the paths the example specs read.
"""
import json
import sys

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer

FEATURES_PER_SIDE = 15


def main(out: str) -> None:
    data = load_breast_cancer()
    names = [f"a{i:02d}" for i in range(FEATURES_PER_SIDE)] + [f"b{i:02d}" for i in range(FEATURES_PER_SIDE)]
    frame = pd.DataFrame(data.data, columns=names)
    frame.insert(0, "id", np.arange(100000, 100000 + len(frame)))
    frame["y"] = data.target
    alice = frame[["id", *names[:FEATURES_PER_SIDE], "y"]]
    bob = frame[["id", *names[FEATURES_PER_SIDE:]]]
    alice = alice[alice.id % 50 != 0].sample(frac=1.0, random_state=1)
    bob = bob[bob.id % 61 != 7].sample(frac=1.0, random_state=2)
    alice.to_csv(f"{out}/alice.csv", index=False)
    bob.to_csv(f"{out}/bob.csv", index=False)
    joined = alice.merge(bob, on="id")
    truth = {c: {"count": int(joined[c].count()), "mean": float(joined[c].mean()),
                 "min": float(joined[c].min()), "max": float(joined[c].max())}
             for c in joined.columns if c != "id"}
    with open(f"{out}/truth.json", "w", encoding="utf-8") as handle:
        json.dump({"rows": len(joined), "stats": truth, "alice": list(alice.columns),
                   "bob": list(bob.columns)}, handle)


if __name__ == "__main__":
    main(sys.argv[1])
