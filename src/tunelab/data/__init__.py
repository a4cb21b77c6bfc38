"""The dataset layer: read examples, check them against OpenAI's rules, count tokens, price them.

Modules: reader (streaming .jsonl/.json/.csv), rules (the error and warning table),
check (the whole-file report), tokens (tokenizers per target), pricing and cost, formats
(convert between chat formats) and split. Nothing here prints; problems are data or
errors from tunelab.errors.
"""
