"""USB keypads and card readers through evdev."""
