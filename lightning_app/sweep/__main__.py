import gc
import sys

if __name__ == "__main__":  # the command, not an import of this module
    gc.disable()  # until what the sweep loads is loaded: driver.prepare freezes it and turns the collector on
    from lightning_app.sweep import launch

    if "-h" not in sys.argv and "--help" not in sys.argv:
        launch.start_server(sys.argv[1:])  # first: it loads for seconds beside the sweep's own imports (0.4 s)

from lightning_app.quick_exit import quick_exit  # noqa: E402
from lightning_app.sweep.driver import main  # noqa: E402

if __name__ == "__main__":
    try:
        main()
    finally:  # every trial has ended: the server has nothing left to do, or is still loading after an error
        launch.stop_server()
    quick_exit()
