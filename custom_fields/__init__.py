"""Field-type registry, runtime DDL, dynamic mapping and schema-version sync between processes.

Empty until the metadata-engine issue lands; see ../shared/ARCHITECTURE.md for the design.
"""
