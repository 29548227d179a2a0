"""Activities: the typed, fault-guarded calls workflows make to the ports, the registry, the cases and routing."""
