"""Intent classification and entity extraction for Chinese (and English) consular messages."""
