"""`python -m controller` is the same as the `fleet` console script."""
import sys

from .cli import main

sys.exit(main())
