"""Sweeps: many training runs of one dataset with different settings, and the best one kept.

    space.py         the flags given lists (--lora-r 8,16) or ranges (--learning-rate 1e-5..1e-3)
    schedule.py      which trials run: the whole grid, or N from Optuna's TPE
    pruning.py       the median rule that stops clearly worse trials early
    local_trials.py  local trials, one after another on one loaded base model and dataset
    cloud_trials.py  cloud trials, priced and confirmed together, created and watched together
    plan.py          the sweep on disk and its trials in the registry (metadata["sweep"])
    board.py         one row per trial, for the live table and --json
    results.py       the winner, the curves PNG, winner.yaml, the losers' weights let go
    runner.py        open (or find to resume) a sweep, run it, finish it

The layer sits above providers (cloud trials go through the provider contract) and evaluate
(the curves use its plot), and below cli, which parses the flags and draws the board.
"""
