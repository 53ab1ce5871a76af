"""The thermos command-line tool."""
