"""GPIO buttons, with fake pins at our own pin seam."""
