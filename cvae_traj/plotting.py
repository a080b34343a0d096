"""Pictures of observed tracks, true futures and sampled futures."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import matplotlib

matplotlib.use("Agg")  # headless: plots are written to files, never shown on a screen
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import animation  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cvae_traj.data.tracks import TrackTable  # noqa: E402
from cvae_traj.errors import InputError  # noqa: E402
from cvae_traj.io import atomic_path  # noqa: E402


def agent_colours(agent_ids) -> dict:
    """A colour per agent id, the same in every frame of a picture or an animation (tab10, in id order)."""
    palette = plt.get_cmap("tab10").colors
    return {a: palette[i % len(palette)] for i, a in enumerate(sorted(agent_ids, key=str))}


def future_alpha(weight: np.ndarray) -> np.ndarray:
    """Opacity of a future drawn with `weight`, the probability it stands for: about twice the weight, between
    0.1 and 0.9, so that 20 faithful draws (0.05 each) are faint and a representative of weight 0.4 is bold."""
    return np.clip(0.1 + 2.0 * np.asarray(weight, dtype=float), 0.1, 0.9)


def draw_forecast(ax: plt.Axes, table: TrackTable, futures: pd.DataFrame, at_step: int, obs_len: int,
                  colours: dict) -> None:
    """On `ax`: each agent's observed track up to `at_step` (its last obs_len steps), the true future of each
    forecast agent where the table has it (dashed), and its futures shaded by their weights, in its colour."""
    ids = table.agent_ids[table.agent]
    observed = (table.step > at_step - obs_len) & (table.step <= at_step)
    horizon = int(futures["step"].max()) if len(futures) else 0
    predicted = futures["agent_id"].unique() if len(futures) else []
    truth = (table.step > at_step) & (table.step <= at_step + horizon) & np.isin(ids, predicted)
    for agent in np.unique(table.agent[observed | truth]):
        mine = table.agent == agent
        colour = colours[table.agent_ids[agent]]
        past = table.xy[mine & observed]
        ax.plot(past[:, 0], past[:, 1], "-o", color=colour, ms=2, lw=1.4)
        true = table.xy[mine & (truth | (table.step == at_step))]  # from the last observed point on
        if len(true) > 1:
            ax.plot(true[:, 0], true[:, 1], "--", color=colour, lw=1.2)
    if len(futures):
        for (agent, _), future in futures.groupby(["agent_id", "sample"], sort=False):
            ax.plot(future["x"], future["y"], "-", color=colours[agent], lw=0.9,
                    alpha=float(future_alpha(future["weight"].iloc[0])))


def plot_futures(table: TrackTable, futures: pd.DataFrame, at_step: int, obs_len: int) -> plt.Figure:
    """Observed tracks up to `at_step`, each predicted agent's true future if the table has it, and its futures
    shaded by their weights: one colour per agent."""
    fig, ax = plt.subplots(figsize=(7, 7))
    draw_forecast(ax, table, futures, at_step, obs_len, agent_colours(table.agent_ids))
    _legend(ax)
    ax.set_title(f"{futures['agent_id'].nunique()} agents, {futures['sample'].nunique()} futures each")
    fig.tight_layout()
    return fig


def _legend(ax: plt.Axes) -> None:
    ax.plot([], [], "-o", color="grey", ms=2, label="observed")
    ax.plot([], [], "--", color="grey", label="true future")
    ax.plot([], [], "-", color="grey", alpha=0.5, label="futures (opacity: probability)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.legend(loc="upper right", fontsize=8)


def animation_frames(table: TrackTable, forecasts, obs_len: int, size: float = 6.0) -> Iterator[plt.Figure]:
    """One figure per forecast frame, for a notebook: `forecasts` yields (step, futures) as live.replay does.
    Every figure has the same limits (the whole recording's) and each agent the same colour throughout. Close
    each figure once shown (plt.close), or a long recording holds them all."""
    colours, limits = agent_colours(table.agent_ids), _limits(table)
    for step, futures in forecasts:
        fig, ax = plt.subplots(figsize=(size, size))
        _draw_animation_frame(ax, table, step, futures, obs_len, colours, limits)
        yield fig


def write_animation(table: TrackTable, forecasts, obs_len: int, path: str | Path, fps: float = 5.0,
                    size: float = 6.0) -> list[Path]:
    """Write the replay as a GIF at `path` (matplotlib's Pillow writer) and, where ffmpeg is installed, an MP4
    beside it; one frame per (step, futures) of `forecasts`. Each file appears only once complete. Returns the
    paths written."""
    path = Path(path)
    steps = list(forecasts)
    if not steps:
        raise InputError(f"{table.source}: no frame to animate")
    colours, limits = agent_colours(table.agent_ids), _limits(table)
    fig, ax = plt.subplots(figsize=(size, size))

    def draw(i: int) -> list:
        ax.clear()
        _draw_animation_frame(ax, table, *steps[i], obs_len, colours, limits)
        return []

    movie = animation.FuncAnimation(fig, draw, frames=len(steps), blit=False)
    written = []
    try:
        with atomic_path(path) as tmp:
            movie.save(tmp, writer=animation.PillowWriter(fps=fps), dpi=80)
        written.append(path)
        if animation.writers.is_available("ffmpeg"):
            mp4 = path.with_suffix(".mp4")
            with atomic_path(mp4) as tmp:
                movie.save(tmp, writer=animation.FFMpegWriter(fps=fps), dpi=80)
            written.append(mp4)
    finally:
        plt.close(fig)
    return written


def _limits(table: TrackTable, margin: float = 1.0) -> tuple[tuple[float, float], tuple[float, float]]:
    low, high = table.xy.min(axis=0) - margin, table.xy.max(axis=0) + margin
    return (low[0], high[0]), (low[1], high[1])


def _draw_animation_frame(ax: plt.Axes, table: TrackTable, step: int, futures: pd.DataFrame, obs_len: int,
                          colours: dict, limits) -> None:
    draw_forecast(ax, table, futures, step, obs_len, colours)
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    agents = futures["agent_id"].nunique() if len(futures) else 0
    ax.set_title(f"frame {table.frames(step):g}: {agents} agents forecast", fontsize=10)


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
