import gc

if __name__ == "__main__":  # the command, not an import of this module
    gc.disable()  # until what the sweep loads is loaded: driver.prepare freezes it and turns the collector on

from lightning_app.quick_exit import quick_exit  # noqa: E402
from lightning_app.sweep.driver import main  # noqa: E402

if __name__ == "__main__":
    main()
    quick_exit()
