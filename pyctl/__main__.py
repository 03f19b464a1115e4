from pyctl.cli.main import main

main()
