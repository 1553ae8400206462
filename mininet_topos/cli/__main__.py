"""``python -m mininet_topos.cli`` = ``qkdnet``."""
import sys

from mininet_topos.cli import main

sys.exit(main())
