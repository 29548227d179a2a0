"""Pure retail domain: models and rules, no I/O. Importable from workflows, activities and starters alike."""
