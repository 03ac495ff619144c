from flcli.entry import run

run()
