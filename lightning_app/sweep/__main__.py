import gc
import sys

from lightning_app.quick_exit import quick_exit

if __name__ == "__main__":  # the command, not an import of this module
    gc.disable()  # until what the sweep loads is loaded: driver.prepare freezes it and turns the collector on
    from lightning_app.sweep import launch

    try:
        if not {"-h", "--help"} & set(sys.argv) and not launch.asks_for_subprocesses(sys.argv[1:]):
            launch.start_server(sys.argv[1:])  # first: it loads for seconds beside the sweep's own imports (0.4 s)
        from lightning_app.sweep.driver import main

        main()
    except KeyboardInterrupt:  # before the first trial (then the sweep's own handler stops the trials)
        print("sweep stopped (Ctrl-C) before its first trial", file=sys.stderr)
        raise SystemExit(130) from None
    finally:  # every trial has ended: the server has nothing left to do, or is still loading
        launch.stop_server()
    quick_exit()
