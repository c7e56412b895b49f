"""The FAQ knowledge base and the country directory."""
