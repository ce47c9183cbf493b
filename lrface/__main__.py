import sys

from lrface.cli.main import main

sys.exit(main())
