"""Excel writers (XlsxWriter, constant-memory), report definitions (pandas) and import readers.

Empty until the export and report issues land; see ../shared/ARCHITECTURE.md for the design.
"""
