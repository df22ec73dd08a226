"""`python -m controller` is the same as the `fleet` console script."""
import sys

from controller.cli.main import main

sys.exit(main())
