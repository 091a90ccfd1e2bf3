from inboxcheck.cli import main

main()
