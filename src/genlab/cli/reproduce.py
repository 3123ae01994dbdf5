"""``genlab reproduce METHOD``: each method's small-scale reproduction, one command per row of
:data:`REPRODUCTIONS`, all made by :func:`reproduction_command`.

Each command runs ``genlab.experiments.<method>.run(out, PRESETS["quick" | "full"][, workers=…])``
(imported when the command runs), prints the report.md it wrote and one line saying where the
results are.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import click

from genlab.cli.options import num_workers_option, out_folder_option

JOBS = "processes for independent jobs (one CPU thread each)"


@dataclass(frozen=True)
class Reproduction:
    """One ``genlab reproduce`` command: ``name`` is the method (and its experiment module), ``quick`` the
    help of --quick, ``done`` the last line printed (``{out}``: the folder; ``{runs}``: how many runs the
    results list), ``workers`` the help of --num-workers (None: the experiment takes no workers)."""

    name: str
    quick: str
    done: str
    help: str
    workers: str | None = JOBS


REPRODUCTIONS = (
    Reproduction("guidance", "one seed, short training, fewer samples (about 3 minutes on 2 cores)",
                 "results, figures and sample grids in {out}", workers=None, help="""
    ICG and TSG vs CFG (Sadat et al. 2025) on digits: models trained with/without label dropping
    and unconditionally, sampled alike, scored by FD, precision, recall and class accuracy; plus
    an FD-vs-scale sweep. Reuses models already trained with the same settings in --out.
    """),
    Reproduction("disco", "one seed, short training, fewer samples (about 5 minutes on 2 cores)",
                 "results, figures and sample grids in {out}", workers=None, help="""
    DisCo-Diff (Xu et al. 2024): the 2-D toy (W2 and path straightness with and without a
    discrete latent) and shapes images (FD vs NFE for EDM vs DisCo-Diff with prior and oracle
    latents, latent CFG sweep, code usage and mutual information with shape/colour/position).
    Reuses models already trained with the same settings in --out.
    """),
    Reproduction("growth", "one seed, depth only, short training (about 1.5 minutes on 2 cores)",
                 "results, curves and per-run logs in {out}", workers="training processes (one CPU thread each)",
                 help="""
    Stacking Your Transformers (Du et al. 2024) on a byte-level LLaMA and the standard
    library's docstrings: a large model trained from scratch vs a small one grown 4x in depth
    (2x in width) with each operator, loss vs tokens and FLOPs, tokens/FLOPs saved to reach the
    scratch model's final loss over 3 seeds, a sweep over growth timing d and factor g,
    and G_stack at a 3x longer budget (about 50 minutes with 2 workers).
    Finished runs in --out are reused.
    """),
    Reproduction("camera", "one seed, 30 steps per arm, 4 scenes (about 1 minute on 2 idle cores; the full preset, "
                 "3 seeds and 48 scenes, about 90 minutes)", "results and trajectories video in {out}", help="""
    VD3D (Bahmani et al. 2024) at small scale, from genlab's pretrained video base: the VD3D
    ControlNet on Plücker frames (base frozen) vs a CameraCtrl-style camera encoder (features added
    inside the frozen base) vs a MotionCtrl-style model (Plücker concatenated to the input, every
    weight fine-tuned) vs the base fine-tuned without any camera, same steps and data, 3 seeds; on
    held-out procedural scenes under orbit, pan, tilt, dolly and random paths (odd scenes reversed).
    Scores: rotation and translation error of the cameras the shipped pose estimator reads off the
    generated clips, trajectory discrimination, PSNR against the true rendering, frame and clip FD
    in genlab's video feature net beside the true-vs-true floor, trainable parameters, training
    time per step and optimiser memory. Writes results.json, report.md and trajectories.gif/.mp4;
    finished stages in --out are reused.
    """),
    Reproduction("worldmodel", "100 episodes, short training, 4 control episodes (about 2.5 minutes on 2 cores; "
                 "the full preset takes about 50)", "results and rollout video in {out}", help="""
    iVideoGPT (Wu et al. 2024) on the built-in PushBlock world: compressive vs per-frame
    tokenizer and action-conditioned vs action-free transformer, scored on held-out episodes by
    PSNR/SSIM (mean and best of N samples), FD, agent position error and rollout speed, at 32×32;
    then CEM model-predictive control scored by the world model's reward head or by its imagined
    frames, vs a random policy vs the true simulator.
    Writes results.json, report.md and rollout.gif/.mp4. Finished stages in --out are reused.
    """),
    Reproduction("enhance", "300 clips at 16×16, short training (under a minute on 2 idle cores; the full preset, "
                 "3,000 clips at 32×32, over an hour)", "results and side-by-side video in {out}", help="""
    VEnhancer (He et al. 2024) at small scale: trilinear up-sampling vs an L2 regression video DiT vs
    the ControlNet enhancer on a frozen base, on held-out clips degraded by trained and unseen (s, k):
    PSNR, SSIM, FD of frames, temporal error. Also noise augmentation on/off on generated
    low-resolution videos, the SDEdit start level, and a long video with chunks blended at every
    step vs hard chunk borders. Writes results.json, report.md and side_by_side.gif/.mp4; finished
    stages in --out are reused.
    """),
    Reproduction("align", "two arms, one seed, tiny base models (about 3 minutes on 2 cores; the full preset, "
                 "four arms and three seeds, about an hour)", "results in {out} ({runs} alignment runs)", help="""
    VADER (Prabhudesai et al. 2024) at small scale: reward-gradient alignment with K = 1 and a larger K
    against DDPO, on digits models (p(class 3); brightness trained on labels 0-4 and checked on the
    held-out 5-9) and a sprite video model (leftward optical flow; temporal consistency), over several
    seeds: reward against reward queries and wall time, the queries VADER needs to reach DDPO's final
    reward, diversity kept and FD to the data. Writes results.json (the seed summary the page is
    rendered from), records.json (every run's record), report.md, curves.png and sample grids/GIFs;
    finished stages in --out are reused.
    """),
)


def reproduction_command(row: Reproduction) -> click.Command:
    """``genlab reproduce <row.name>``: --quick, --num-workers (unless ``row.workers`` is None) and --out."""

    def reproduce_method(quick: bool, out: str, num_workers: int | None = None) -> None:
        experiment = importlib.import_module(f"genlab.experiments.{row.name}")
        preset = experiment.PRESETS["quick" if quick else "full"]
        workers = {} if num_workers is None else {"workers": num_workers}
        results = experiment.run(Path(out), preset, **workers)
        click.echo((Path(out) / "report.md").read_text())
        click.echo(row.done.format(out=out, runs=len(results.get("runs", ())) if isinstance(results, dict) else 0))

    options = [click.option("--quick", is_flag=True, help=row.quick)]
    if row.workers is not None:
        options.append(num_workers_option(row.workers))
    options.append(out_folder_option(f"runs/reproduce/{row.name}"))
    for decorate in reversed(options):
        reproduce_method = decorate(reproduce_method)
    return click.command(row.name, help=row.help)(reproduce_method)


@click.group("reproduce")
def reproduce() -> None:
    """Small-scale reproductions of each paper's key claim (our numbers beside the paper's).

    Each writes results.json, report.md and figures to --out; --quick is a ~3-minute CPU run.
    """


for _row in REPRODUCTIONS:
    reproduce.add_command(reproduction_command(_row))
