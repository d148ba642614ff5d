import sys

from sfnode.cli import main

sys.exit(main())
