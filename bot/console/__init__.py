"""The duty officers' web console."""
