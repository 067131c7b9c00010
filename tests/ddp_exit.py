"""A test-only callback for spawned DDP ranks: leave the process group cleanly before the process exits.

Without it, a rank that returns from ``trainer.fit`` / ``validate`` while rank 0 is still saving
exits with its gloo process group alive, and now and then aborts in the C++ destructors at exit
("terminate called without an active exception", SIGABRT), which fails the spawn. Put it last in
the callbacks: the teardown hooks of the callbacks under test run before it.
"""

import pytorch_lightning as pl
import torch.distributed as dist


class LeaveProcessGroup(pl.Callback):
    """At ``teardown``: a barrier (every rank done), then ``destroy_process_group``."""

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
