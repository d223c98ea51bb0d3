"""Draw conjure-features v1 against v2, head by head (test and validation accuracy), into
models/conjure-features/heads.png. Run from the repo root: python recipes/judge-v2/compare.py"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main(models: Path = Path("models"), out: Path = Path("models/conjure-features/heads.png")) -> Path:
    v1 = json.loads((models / "conjure-features-v1" / "metrics.json").read_text())
    v2 = json.loads((models / "conjure-features" / "metrics.json").read_text())
    heads = list(v2["test"])
    x = np.arange(len(heads))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    bars = (("v1 test", v1, "test", "#c0c0c0"), ("v2 test", v2, "test", "#4c72b0"),
            ("v1 validation", v1, "validation", "#e0e0e0"), ("v2 validation", v2, "validation", "#8fb0d8"))
    for k, (label, m, split, colour) in enumerate(bars):
        ax.bar(x + (k - 1.5) * 0.2, [m[split][h]["accuracy"] for h in heads], 0.2, label=label, color=colour)
    ax.set_xticks(x, [h.replace("_", "\n") for h in heads], fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("accuracy (held-out)")
    ax.set_title(f"conjure-features v1 ({v1['weights_sha256'][:8]}) against v2 ({v2['weights_sha256'][:8]})", fontsize=9)
    ax.legend(fontsize=8, ncol=4, loc="upper center", frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(main())
