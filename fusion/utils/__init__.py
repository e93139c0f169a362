"""Small shared helpers: image I/O, atomic writes, device choice, logging, CLI conventions."""
