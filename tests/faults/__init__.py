"""The fault suite: crashes, outages, duplicates and bad input lose nothing (see docs/faults.md)."""
