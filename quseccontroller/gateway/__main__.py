"""``python -m quseccontroller.gateway``: run the gateway process."""
import sys

from quseccontroller.gateway.process import main

sys.exit(main())
