"""The Temporal client layer: connecting, routing events to processes, schedules."""
