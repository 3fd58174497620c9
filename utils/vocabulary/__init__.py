"""Text vocabularies: the tokenizer, extending a vocabulary, expanding a model's text rows."""
