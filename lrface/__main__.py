import sys

from lrface.cli import main

sys.exit(main())
