"""`tunelab migrate`: save what was built on a provider that is closing, and move it.

    inventory   every fine-tuned model and job of the account, imported into the registry
    pull        a job's training, validation and result files, stored here by content hash
    record      the model's answers to held-out prompts, as a golden set (evaluate/golden.py)
    retrain     a replacement trained from the pulled data, here or on another provider
    status      where each model stands, its days left, and the next command

Each step leaves its trace in the registry row of the old job (its config, an ImportedJob:
`config.migrate`, see state.py) or in the golden set, so each is idempotent, resumes where
it stopped, and `status` reads them.
Nothing here prints: the CLI (cli/migrate_cmd.py) renders what these functions return.
"""
