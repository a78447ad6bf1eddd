import sys

from helpers.app.cli import main

sys.exit(main())
