from aim_engine.cli import main

raise SystemExit(main())
