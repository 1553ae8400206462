from quseccontroller.parent.server import main

raise SystemExit(main())
