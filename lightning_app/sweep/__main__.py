from lightning_app.quick_exit import quick_exit
from lightning_app.sweep.driver import main

if __name__ == "__main__":
    main()
    quick_exit()
