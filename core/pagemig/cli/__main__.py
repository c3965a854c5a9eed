"""``python -m pagemig.cli``: the console script without its wrapper."""

from pagemig.cli import main

main()
