"""Stage logic of the downstream tasks (classify, retrieve): one module per job, no CLI."""
