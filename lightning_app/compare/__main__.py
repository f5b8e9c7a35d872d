from lightning_app.compare import main

main()
