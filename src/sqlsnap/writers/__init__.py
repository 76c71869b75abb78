"""Writers turn (table, rows) into the bytes of a layout: the document, or JSON Lines."""
