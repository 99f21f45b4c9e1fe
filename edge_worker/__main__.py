from edge_worker.cli import main

raise SystemExit(main())
