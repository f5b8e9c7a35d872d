import gc

if __name__ == "__main__":  # the command, not an import of this module
    gc.disable()  # while torch and Lightning load: see run()
    from lightning_app.deferred import defer_unused_imports

    defer_unused_imports()  # scipy.signal, which importing Lightning loads (0.7 s) and a run never uses

from lightning_app.cli import main  # noqa: E402
from lightning_app.defaults import fix_malloc_thresholds  # noqa: E402
from lightning_app.quick_exit import quick_exit  # noqa: E402


def run() -> None:
    """``main()`` with the objects of the imported modules frozen out of the garbage collector's reach.

    torch's and Lightning's modules leave about 420,000 tracked objects that live until exit. While
    they load, the command keeps the collector off: each full collection walks every object made so
    far, and seven of them took 0.7 s of the 3.7 s that importing torch, Lightning and W&B takes.
    Frozen, the collector no longer walks them in each full collection during the run, nor at exit,
    where collecting them costs about as long as importing them did (docs/speed.md). The little
    garbage that loading leaves (about 12,000 objects, 8 MB) stays with them. glibc's malloc thresholds
    are fixed first (``defaults.fix_malloc_thresholds``).
    """
    fix_malloc_thresholds()
    gc.freeze()
    gc.enable()
    main()
    gc.freeze()


if __name__ == "__main__":
    run()
    quick_exit()  # skips tearing down torch, Lightning and W&B object by object
