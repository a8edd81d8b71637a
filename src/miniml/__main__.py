from miniml.cli import main

main()
