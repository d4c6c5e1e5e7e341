import sys

from streams.cli.kafka import main

sys.exit(main())
