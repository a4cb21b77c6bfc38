"""The dataset layer: read examples, check them against OpenAI's rules, count tokens, price them.

    reader      stream .jsonl/.json/.csv as records with real line numbers
    rules       the error and warning table, and the per-example checker
    check       the whole-file report behind `data check` (parallel: big .jsonl on many cores)
    tokens      token counts per target (tiktoken tables offline, local chat templates)
    pricing     prices as data (pricing.json, overridable from TUNELAB_HOME); cost: billing
    formats     OpenAI <-> Gemini/ShareGPT/Alpaca/CSV; convert and split write them (output)

Nothing here prints; problems are data (Problem) or errors from tunelab.errors.
"""
