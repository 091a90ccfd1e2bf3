from inboxcheck._cli import main

main()
