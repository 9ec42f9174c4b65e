import sys

from paystream.cli import main

sys.exit(main())
