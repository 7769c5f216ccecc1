"""chat_service's benchmark: see bench/run.py."""
