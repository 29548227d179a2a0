"""The ports to ERP, WMS and POS, their messages, and the PostgreSQL stubs that behave like real systems."""
