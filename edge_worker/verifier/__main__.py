from edge_worker.verifier.cli import main

raise SystemExit(main())
