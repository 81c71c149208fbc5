"""Model stage: load the base model and tokenizer, apply the PEFT method, count parameters."""
