import sys

from service.embedded_cluster.cli import main

sys.exit(main())
