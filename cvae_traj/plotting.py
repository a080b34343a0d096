"""Pictures of observed tracks, true futures and sampled futures."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: plots are written to files, never shown on a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cvae_traj.data.tracks import TrackTable  # noqa: E402
from cvae_traj.io import atomic_path  # noqa: E402


def plot_futures(table: TrackTable, futures: pd.DataFrame, at_step: int, obs_len: int) -> plt.Figure:
    """Observed tracks up to `at_step`, each predicted agent's true future if the table has it, and the samples."""
    fig, ax = plt.subplots(figsize=(7, 7))
    predicted = set(futures["agent_id"].unique().tolist())
    ids = table.agent_ids[table.agent]
    observed = (table.step > at_step - obs_len) & (table.step <= at_step)
    horizon = int(futures["step"].max())
    truth = (table.step > at_step) & (table.step <= at_step + horizon) & np.isin(ids, list(predicted))
    for agent in np.unique(table.agent[observed | truth]):
        mine = table.agent == agent
        past = table.xy[mine & observed]
        ax.plot(past[:, 0], past[:, 1], "-o", color="black", ms=2, lw=1.2,
                label="observed" if agent == table.agent[observed][0] else None)
        # Include the last observed point so the true future joins the track.
        true = table.xy[mine & (truth | (table.step == at_step))]
        if len(true) > 1:
            ax.plot(true[:, 0], true[:, 1], "--", color="tab:green", lw=1.5)
    for (_, _), sample in futures.groupby(["agent_id", "sample"], sort=False):
        ax.plot(sample["x"], sample["y"], "-", color="tab:red", alpha=0.25, lw=0.8)
    ax.plot([], [], "--", color="tab:green", label="true future")
    ax.plot([], [], "-", color="tab:red", label="samples")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.legend(loc="best")
    ax.set_title(f"{len(predicted)} agents, {futures['sample'].nunique()} samples each")
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Save a PNG atomically and release the figure."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def plot_kl_per_dim(kl_per_dim, activity, threshold: float) -> plt.Figure:
    """A bar per latent dimension: its KL (nats), with the inactive ones (Burda et al.) greyed out."""
    kl = np.asarray(kl_per_dim)
    active = np.asarray(activity) > threshold
    fig, ax = plt.subplots(figsize=(max(4, 0.4 * len(kl)), 3))
    ax.bar(np.arange(len(kl)), kl, color=np.where(active, "tab:blue", "lightgrey"))
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL(q || p) [nats]")
    ax.set_title(f"{int(active.sum())} of {len(kl)} units active")
    fig.tight_layout()
    return fig


def plot_reliability(curves: dict[str, dict[float, float]]) -> plt.Figure:
    """Observed coverage of the true final position against each region's nominal level (diagonal = calibrated).

    `curves` maps a label (e.g. a scene) to {nominal level: observed coverage}.
    """
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
    for label, coverage in curves.items():
        levels = sorted(coverage)
        ax.plot(levels, [coverage[a] for a in levels], "-o", markersize=3, label=label)
    ax.set_xlabel("nominal level of the sample region")
    ax.set_ylabel("fraction of true final positions inside")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig
