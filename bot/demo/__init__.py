"""Demo mode: WeChat simulator page and stand-in API."""
