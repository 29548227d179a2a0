"""Configuration of a retailflow process: settings, its log stream, its traces."""
