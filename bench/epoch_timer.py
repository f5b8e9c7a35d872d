"""The epoch timer that `bench/speed.py` adds to each `fit` it times, on the path as a top-level module
(``epoch_timer``) so that a checkout given by ``--roots`` is timed by this same code."""

import resource
import time

import lightning as L


class EpochTimer(L.Callback):
    """Prints the seconds from the first training epoch's start to the end of training: wall, and the
    process's CPU time (every thread's), which time the machine gave to other jobs does not move; and
    the minor page faults meanwhile (memory touched for the first time, docs/speed.md)."""

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = getattr(self, "start", (time.perf_counter(), time.process_time(), minor_faults()))

    def on_train_end(self, trainer, pl_module):
        wall, cpu = time.perf_counter() - self.start[0], time.process_time() - self.start[1]
        print(f"EPOCH_SECONDS {wall} {cpu} {minor_faults() - self.start[2]}", flush=True)


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
