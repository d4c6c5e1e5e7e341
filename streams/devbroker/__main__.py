import sys

from streams.devbroker.broker import main

sys.exit(main())
