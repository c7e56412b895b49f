"""One module per kind of conversation, and the routing table that picks between them."""
