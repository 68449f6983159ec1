"""`latency predict --plot`: per-layer predicted latency beside MACs, as a PNG.

Two bar charts share the layer axis (execution order, top to bottom): time on the left,
MACs on the right, both as shares of the network's total, coloured by op. A layer whose
time share is far above its MAC share is memory-bound (depthwise convs, adds, the first
layers at high resolution): pruning it saves FLOPs but little time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

COLOURS = {"conv": "#4c72b0", "dwconv": "#dd8452", "conv1x1": "#55a868", "conv1x1+add": "#8172b3",
           "avgpool+fc": "#937860"}


def _colour(op: str) -> str:
    base = op.split("/")[0]
    if base.startswith("dwconv"):
        return COLOURS["dwconv"]
    if base.startswith("conv") and base not in COLOURS:
        return COLOURS["conv"]
    return COLOURS.get(base, "#888888")


def write_plot(result: dict, path: str | os.PathLike, title: str, overwrite: bool = True) -> None:
    """Write the PNG atomically (temp file in the same directory, then rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    layers = result["layers"]
    names = [layer["name"].split("/", 1)[-1] for layer in layers]
    ms = [layer["predicted_ms"] for layer in layers]
    total_macs = sum(layer["macs"] for layer in layers) or 1
    mac_share = [100.0 * layer["macs"] / total_macs for layer in layers]
    time_share = [100.0 * layer["share"] for layer in layers]
    colours = [_colour(layer["op"]) for layer in layers]
    y = list(range(len(layers)))

    height = max(4.0, 0.22 * len(layers) + 1.5)
    fig, (ax_t, ax_m) = plt.subplots(1, 2, sharey=True, figsize=(12, height), gridspec_kw={"wspace": 0.05})
    ax_t.barh(y, time_share, color=colours)
    ax_m.barh(y, mac_share, color=colours)
    ax_t.set_yticks(y, names, fontsize=7)
    ax_t.invert_yaxis()
    ax_t.set_xlabel("predicted time, % of total")
    ax_m.set_xlabel("MACs, % of total")
    for i, v in enumerate(ms):
        ax_t.text(time_share[i], i, f"{v:.3f} ms ", va="center", ha="right", fontsize=6)
    top = max(max(time_share), max(mac_share)) * 1.25
    ax_t.set_xlim(top, 0)
    ax_m.set_xlim(0, top)
    for ax in (ax_t, ax_m):
        ax.grid(axis="x", alpha=0.3)
    seen = {}
    for layer, c in zip(layers, colours):
        seen.setdefault(c, layer["op"].split("/")[0])
    ax_m.legend(handles=[Patch(color=c, label=op) for c, op in seen.items()], loc="lower right", fontsize=8)
    fig.suptitle(f"{title}: {result['predicted_ms']:.3f} ms predicted, {total_macs / 1e6:.1f}M MACs", fontsize=11)
    fig.subplots_adjust(left=0.2, right=0.98, top=1 - 0.6 / height, bottom=0.7 / height, wspace=0.04)

    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent or ".")
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; the PNG should look like any other output
        fig.savefig(tmp, dpi=110)
        from amc_tf.core.fileutil import publish

        publish(tmp, path, overwrite=overwrite)
    except OSError as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        from amc_tf.core.errors import AmcError, OutputExistsError

        if isinstance(exc, FileExistsError):
            raise OutputExistsError(f"{path} was created by another process meanwhile; it was left as it is: "
                                    "pass --force to replace it") from None
        raise AmcError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
