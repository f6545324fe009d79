"""StreamChar: real-time, long-horizon streaming of a talking character (speech + video from text)."""

__version__ = "0.1.0"
