import gc

from lightning_app.cli import main

if __name__ == "__main__":
    # torch's and Lightning's modules leave about a million objects that live until exit: frozen, the
    # collector no longer walks them on each full collection during the run, nor at exit, where
    # collecting them costs about as long again as a small model's training (docs/speed.md).
    gc.freeze()
    main()
    gc.freeze()
