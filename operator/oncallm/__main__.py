from oncallm.cli import main

raise SystemExit(main())
