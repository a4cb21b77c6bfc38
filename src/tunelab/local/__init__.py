"""The local trainer: load a model, tokenize with assistant masks, train, checkpoint, generate.

    orchestrator   train(config) and resume(job): a job's life, registered before it loads
    prepare        check the config's files, read the examples, tokenize them (via the method)
    trainer        the loop, setup -> train -> save, handed a training method
    methods/       training methods (supervised today): encode, collate, loss, metrics, validate
    encoding       chats to token ids with labels on assistant tokens only
    batching       length-grouped batches whose order is a function of (seed, epoch); collate
    assistant_loss the plain loss over labelled tokens, the reference every kernel matches
    kernels/       speed kernels behind one switch (chunked loss, fused MLP, LoRA, RMSNorm)
    validation     the one validation loss, shared by the trainer and `compare`
    checkpoints    atomic checkpoint folders, `latest` and `best` pointers, retention
    state          what a checkpoint holds besides the weights; resume reads it back
    recorder       the loop's progress into train.log, metrics.jsonl, the registry, events
    liveness       is a run's process still there (its train.pid); no torch
    warm           one loaded base and tokenized data lent to a sweep's trials
    launch         `train --nproc N` under `accelerate launch`; rank 0 keeps the books
    dryrun         `train --dry-run`: the plan and a few timed steps, nothing kept
    memory         keep freed pages in the process between steps, hand them back after
    model_source   find and load models: the embedded GGUF, hub ids, local folders
    weights        which weights a name means (base, job, checkpoint, adapter)
    inference      chat with local weights (`test`, `chat`, `compare`), score validation
    generation     the sampling defaults every answer uses
    samples        the sample answers written after training
    export         merged weights and GGUF out of a job; gguf/ writes the files and Ollama's
"""
