"""tunelab: from a file of dialogues to a fine-tuned chat model, on any provider or locally.

The package is layered; a module imports only from its own layer or the layers below it,
never from one above (tests/test_layers.py reads every import and enforces this order):

    cli         typer commands: the only place that prints, prompts or exits
    server      the OpenAI-compatible API over the layers below
    migrate     leaving a closing provider: inventory, pull, record, retrain, status
    sweep       many trainings of one dataset, the best kept: grid or TPE, pruning, resume
    runs        the one door: start, cancel and resume every job, whoever asks, wherever it runs
    evaluate    test prompts, compare, metrics, reports
    providers   one file per provider, all on the contract in providers/base.py
    local       the local trainer, inference, weights and export
    registry    the SQLite job history: jobs, events, metrics, files, checkpoints
    data        examples, validation rules, tokenizers, formats, pricing, cost
    config      TrainConfig and presets
    home        where state lives (TUNELAB_HOME)
    errors      the one user-facing error tree

The package's own modules (`__main__`, this file) stand outside the order.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
