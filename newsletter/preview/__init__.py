"""What editors see before anything goes out: the preview message, the preflight
(`check`), the live preview server, screenshots and test sends."""
