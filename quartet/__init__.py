"""quartet: the wiring of families into verbs (the CLI, the stage entry point, the public API)."""
