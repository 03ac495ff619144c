from flcli.cli import main

main()
