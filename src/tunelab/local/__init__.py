"""The local trainer: load a model, tokenize with assistant masks, train, checkpoint, generate."""
