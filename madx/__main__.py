from madx.cli import main

raise SystemExit(main())
