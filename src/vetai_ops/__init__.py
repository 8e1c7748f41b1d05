"""vetai-ops: safe, one-command database deploys for VetAI Connect."""

__version__ = "0.1.0"
