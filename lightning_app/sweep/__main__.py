from lightning_app.sweep.driver import main

if __name__ == "__main__":
    main()
