"""Writing a matplotlib figure to a PNG: one place for the tail every plot shares.

>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import matplotlib.pyplot as plt, tempfile, pathlib
>>> figure, axis = plt.subplots()
>>> path = save(figure, pathlib.Path(tempfile.mkdtemp()) / "deep" / "er" / "plot.png", "a title", dpi=50)
>>> path.exists() and path.read_bytes()[:4] == b"\\x89PNG"
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save(figure: Any, path: Path, title: str, dpi: int, title_size: float | None = None) -> Path:
    """Title `figure`, lay it out, write it to `path` (its folder made if missing) and close it."""
    import matplotlib.pyplot as plt

    figure.suptitle(title, fontsize=title_size)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path
