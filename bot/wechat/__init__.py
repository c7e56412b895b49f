"""WeChat's protocol: signatures, safe-mode crypto, message parsing and the API client."""
