"""What performers and clients touch: OSC, the terminal surface, the web page."""
