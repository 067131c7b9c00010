"""The ``tb-viz`` command (also ``python -m tb_viz_plugin``).

``tb-viz backfill``: give a run trained without tb-viz the tb-viz tab, from its checkpoints (see
:mod:`tb_viz_plugin.backfill`). Importing this module is cheap: torch and Lightning are imported
only when a subcommand runs.

Example:
    >>> main(["backfill", "--checkpoints", "no/such/dir/*.ckpt", "--module", "m:C", "--data", "m:f"])  # doctest: +SKIP
    2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List, Optional

BACKFILL_EXAMPLE = """\
example (backfill a demo run trained with --no-callbacks):
  python -m tb_viz_plugin.demo --logdir logs --no-callbacks --no-serve
  tb-viz backfill --checkpoints 'logs/**/*.ckpt' \\
      --module tb_viz_plugin.demo.model:ShapesModule \\
      --data tb_viz_plugin.demo.data:val_loader \\
      --callbacks tb_viz_plugin.demo.train:demo_callbacks
  tensorboard --logdir logs --samples_per_plugin tb_viz=0

plain PyTorch (state-dict checkpoints named like net-step=1200.pt):
  tb-viz backfill --checkpoints 'runs/exp1/*.pt' --logdir runs/exp1 \\
      --model my_project.nets:build_net --data my_project.data:val_loader \\
      --step-from 'step=(\\d+)'

Each checkpoint is visualized at its own global step (and epoch), in global-step order, into
its run's log directory (<run>/ for <run>/checkpoints/*.ckpt), beside the existing event files.
A (tag, step) already logged is not written again, so an interrupted backfill can be re-run.
MODULE is searched in the current directory and on PYTHONPATH.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tb-viz", description="tb-viz: see what your CNN has learned, epoch by epoch, in TensorBoard."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    backfill = commands.add_parser(
        "backfill",
        help="visualize the checkpoints of a run trained without tb-viz, at their global steps",
        description="Replay tb-viz callbacks on each checkpoint of a run, writing at the checkpoint's\n"
        "global step into the run's log directory, so TensorBoard shows one run.",
        epilog=BACKFILL_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backfill.add_argument("--checkpoints", required=True, metavar="GLOB",
                          help="checkpoint files; quote it; '**' searches sub-directories")
    which = backfill.add_mutually_exclusive_group(required=True)
    which.add_argument("--module", metavar="MODULE:CLASS",
                       help="the LightningModule class (restored with load_from_checkpoint)")
    which.add_argument("--model", metavar="MODULE:FUNCTION",
                       help="plain PyTorch: a function building the torch.nn.Module; checkpoints are its state dicts")
    backfill.add_argument("--data", required=True, metavar="MODULE:FUNCTION",
                          help="a function returning the validation DataLoader, or a LightningDataModule class")
    backfill.add_argument("--callbacks", metavar="MODULE:FUNCTION",
                          help="a function returning the callbacks (default: every tb-viz callback that needs no argument, at its defaults)")
    backfill.add_argument("--logdir", metavar="DIR",
                          help="write into DIR (default: each checkpoint's run directory, from Lightning's layout)")
    backfill.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    backfill.add_argument("--step-from", metavar="REGEX",
                          help="read the global step from the file name: the group 'step', else the first group "
                          "(an 'epoch' group gives the epoch); needed for checkpoints that do not store it")
    backfill.add_argument("--limit-val-batches", type=int, metavar="N",
                          help="use only N validation batches (as the run's Trainer(limit_val_batches=N))")
    backfill.add_argument("--strict", action="store_true", help="stop at a failing visualization instead of warning")
    backfill.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _backfill(args: argparse.Namespace) -> int:
    from tb_viz_plugin.backfill import BackfillError, backfill  # torch and Lightning from here on

    start = time.perf_counter()
    try:
        results = backfill(
            args.checkpoints, args.data, module=args.module, model=args.model, callbacks=args.callbacks,
            logdir=args.logdir, device=args.device, step_from=args.step_from,
            limit_val_batches=args.limit_val_batches, strict=args.strict, progress=not args.no_progress,
        )  # fmt: skip
    except BackfillError as err:
        print(f"tb-viz backfill: error: {err}", file=sys.stderr)
        return 2
    ran = [r for r in results if r.status == "backfilled"]
    written = sum(len(r.written) for r in results)
    runs = sorted({str(r.checkpoint.run_dir) for r in results})
    per = sum(r.seconds for r in ran) / len(ran) if ran else 0.0
    print(f"replayed {len(ran)} of {len(results)} checkpoints ({len(results) - len(ran)} already logged) into "
          f"{len(runs)} run(s): {written} (tag, step) written, {sum(len(r.skipped) for r in results)} already there; "
          f"{time.perf_counter() - start:.1f} s in all, {per:.1f} s per replayed checkpoint")  # fmt: skip
    stages: Dict[str, float] = {}
    for result in ran:
        for stage, seconds in result.stages.items():
            stages[stage] = stages.get(stage, 0.0) + seconds / len(ran)
    if stages:
        print("seconds per checkpoint: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(stages.items(), key=lambda kv: -kv[1])))
    for run in runs:
        print(f"  {run}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``tb-viz`` with ``argv`` (default: the command line); returns the exit status.

    Like ``python -m``, the current directory is searched for the ``MODULE`` of ``MODULE:NAME``.
    """
    args = _parser().parse_args(argv)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    if args.command == "backfill":
        return _backfill(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
