import gc

from lightning_app.cli import main
from lightning_app.defaults import fix_malloc_thresholds
from lightning_app.quick_exit import quick_exit


def run() -> None:
    """``main()`` with the objects of the imported modules frozen out of the garbage collector's reach.

    torch's and Lightning's modules leave about 400,000 tracked objects that live until exit: frozen,
    the collector no longer walks them in each full collection during the run, nor at exit, where
    collecting them costs about as long as importing them did (docs/speed.md). glibc's malloc thresholds
    are fixed first (``defaults.fix_malloc_thresholds``).
    """
    fix_malloc_thresholds()
    gc.freeze()
    main()
    gc.freeze()


if __name__ == "__main__":
    run()
    quick_exit()  # skips tearing down torch, Lightning and W&B object by object
