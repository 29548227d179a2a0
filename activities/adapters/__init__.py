"""Ports (ports.py) and the PostgreSQL-backed stub ERP, WMS and POS that implement them."""
