"""Write a Hugging Face causal LM as one GGUF file, with its tokenizer and chat template,
and the Ollama Modelfile that runs it: no converter script, no network, no compiler.

    writer.py     tensors: llama.cpp's names, the Q/K rope permutation, f16/bf16/q8_0
    tokenizer.py  the vocabulary, merges, special tokens, BOS flag and pre-tokenizer name
    ollama.py     the Modelfile, whose Go-template TEMPLATE renders what the HF template does

Supported: the Llama family (SmolLM2, Llama 3.x), Mistral, Qwen2/2.5 and Qwen3. Any other
architecture is refused before anything is written.
"""
