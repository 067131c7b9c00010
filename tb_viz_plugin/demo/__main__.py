"""``python -m tb_viz_plugin.demo``: train the shapes demo, then serve TensorBoard on its logs."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

import torch


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tb_viz_plugin.demo", description=__doc__)
    parser.add_argument("--logdir", required=True, help="TensorBoard log directory (runs go to seed<S>/version_<K>)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, initialisation and batch order (default: 0)")
    parser.add_argument("--no-serve", action="store_true", help="only train; do not start TensorBoard")
    parser.add_argument("--no-callbacks", action="store_true", help="train without the tb-viz callbacks")
    parser.add_argument("--port", type=int, default=6006, help="TensorBoard port (default: 6006)")
    return parser.parse_args(argv)


def _available_cpus() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _serve(logdir: str, port: int) -> int:
    """Run TensorBoard on ``logdir`` until it exits, Ctrl-C or SIGTERM; return its exit code."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops TensorBoard too
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--port", str(port),
               "--host", "localhost", "--samples_per_plugin", "tb_viz=0"]  # fmt: skip
    server = subprocess.Popen(command)
    print(f"TensorBoard: http://localhost:{port}/#tb_viz  (Ctrl-C to stop)", flush=True)
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        print("TensorBoard stopped.")
        return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, train, print the results, then serve unless ``--no-serve``."""
    args = _parse_args(argv)
    torch.set_num_threads(_available_cpus())
    from tb_viz_plugin.demo.train import train  # after the thread setting; imports Lightning

    result = train(args.logdir, epochs=args.epochs, seed=args.seed, callbacks=not args.no_callbacks)
    print(f"final val acc: {result['val_acc']:.4f}")
    print(f"wall time:     {result['seconds']:.1f} s")
    print(f"run dir:       {result['run_dir']}")
    print(f"checkpoint:    {result['checkpoint']}")
    print(f"per epoch:     {result['run_dir'] / 'checkpoints'} (what `tb-viz backfill` replays)")
    return 0 if args.no_serve else _serve(args.logdir, args.port)


if __name__ == "__main__":
    sys.exit(main())
