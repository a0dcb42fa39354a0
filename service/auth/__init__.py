"""API keys: who a bearer key belongs to, and the throttle on invalid keys."""
